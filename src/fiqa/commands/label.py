"""``fiqa label STORE --method NAME -o LABELS.parquet``: pseudo quality labels of an embedding store."""
from __future__ import annotations

import json
import logging

import click

from fiqa.commands._common import TABLE_OUT_HELP, check_table_out, info, note, out_option

logger = logging.getLogger(__name__)


def parse_params(pairs: tuple[str, ...]) -> dict[str, object]:
    """``("n_repeats=6", "signed=true", "centres=fc.npy")`` -> ``{"n_repeats": 6, "signed": True, ...}``.

    Values are read as JSON (numbers, ``true``/``false``, ``null``) and otherwise kept as strings.
    """
    params: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="'--param'")
        if key in params:
            raise click.BadParameter(f"{key!r} is given twice", param_hint="'--param'")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def describe_labelers(width: int = 120) -> list[str]:
    """The lines of ``fiqa label --list``, from the registry's metadata: per method its summary and reference, its
    parameters sorted, then each parameter with its default (what ``-p`` overrides) and meaning, wrapped to
    ``width`` columns."""
    import textwrap

    from fiqa.core.params import describe
    from fiqa.label import LABELERS

    lines = []
    for entry in LABELERS.entries():
        params = {name: param for name, param in entry.params.items() if name != "random_state"}
        lines.append(f"{entry.name:22s} {entry.summary}")
        if entry.reference:
            lines.append(f"{'':22s} reference: {entry.reference}")
        lines.append(f"{'':22s} parameters: {', '.join(sorted(params)) or '(none)'}")
        for name, param in params.items():
            head = f"{'':25s}{name} = {param.default!r}".ljust(57)
            text = f"{param.meaning} Must be {describe(param.constraints)}."
            lines.extend(textwrap.wrap(text, width, initial_indent=head + " ", subsequent_indent=" " * 58))
    lines.append("")
    lines.append("Set a parameter with -p NAME=VALUE (read as JSON: -p signed=true -p n_repeats=6); the seed is "
                 "--random-state.")
    return lines


@click.command("label")
@click.argument("store", required=False, type=click.Path(file_okay=False))
@click.option("--method", "-m", default=None, help="Labelling method (see --list).")
@out_option("Labels table to write. " + TABLE_OUT_HELP, required=False, dest="out_path",
            type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--param", "-p", "param_pairs", multiple=True, metavar="KEY=VALUE",
              help="A method parameter, e.g. -p n_repeats=12 -p signed=true; repeat for several.")
@click.option("--random-state", type=int, default=0, show_default=True, help="random_state of the method.")
@click.option("--list", "list_methods", is_flag=True,
              help="List the labelling methods, their parameters, defaults and meaning.")
def command(
    store: str | None,
    method: str | None,
    out_path: str | None,
    param_pairs: tuple[str, ...],
    random_state: int,
    list_methods: bool,
) -> None:
    """Compute pseudo quality labels (sdd, cr, baselines, ...) for the usable samples of STORE.

    Columns of the table: sample_id, score (the label, higher is better; NaN unless ok), status, reason, identity,
    then the method's components (e.g. mean_positive, w1 for sdd; ccs, nnccs for cr).
    """
    if list_methods:
        for line in describe_labelers():
            click.echo(line)
        return
    if not (store and method and out_path):
        missing = [hint for hint, value in (("STORE", store), ("--method", method), ("--out", out_path)) if not value]
        raise click.UsageError(f"missing {', '.join(missing)} (or use --list)")
    from fiqa.io.table import STDOUT, write_quality
    from fiqa.label import create_labeler, label_store
    from fiqa.store import open_store

    params = parse_params(param_pairs)
    if "random_state" in params:
        raise click.BadParameter("use --random-state instead of -p random_state=...", param_hint="'--param'")
    labeler = create_labeler(method, random_state=random_state, **params)
    check_table_out(out_path, [store])  # before the work: never into the store, never over an input
    table = label_store(open_store(store), labeler)
    path = write_quality(table, out_path)
    counts = ", ".join(f"{k} {v:,}" for k, v in table.meta.status_counts.items())
    summary = f"{labeler.name}: {int(table.ok.sum()):,} of {len(table):,} samples labelled ({counts})"
    if out_path == STDOUT:
        note(summary)
    else:
        info(f"{summary} -> {path}")
