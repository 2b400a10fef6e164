"""``fiqa label STORE --method NAME --out LABELS.parquet``: pseudo quality labels of an embedding store."""
from __future__ import annotations

import json
import logging

import click

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


@click.command("label")
@click.argument("store", required=False, type=click.Path(file_okay=False))
@click.option("--method", "-m", default=None, help="Labelling method (see --list).")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None,
              help="Labels table to write (Parquet, with a .json metadata sidecar).")
@click.option("--param", "-p", "param_pairs", multiple=True, metavar="KEY=VALUE",
              help="A method parameter, e.g. -p n_repeats=12 -p signed=true; repeat for several.")
@click.option("--seed", type=int, default=0, show_default=True, help="random_state of the method.")
@click.option("--list", "list_methods", is_flag=True, help="List the labelling methods and their parameters.")
def command(store: str | None, method: str | None, out_path: str | None, param_pairs: tuple[str, ...], seed: int,
            list_methods: bool) -> None:
    """Compute pseudo quality labels (sdd, cr, baselines, ...) for the usable samples of STORE."""
    from fiqa.io.table import check_output, save_quality
    from fiqa.label import LABELERS, create_labeler, label_store, list_labelers

    if list_methods:
        for name in list_labelers():
            factory = LABELERS.get(name)
            params = ", ".join(p for p in factory.param_names() if p != "random_state")
            click.echo(f"{name:22s} {LABELERS.summary(name)}")
            click.echo(f"{'':22s} parameters: {params or '(none)'}")
        return
    missing = [hint for hint, value in (("STORE", store), ("--method", method), ("--out", out_path)) if not value]
    if missing:
        raise click.UsageError(f"missing {', '.join(missing)} (or use --list)")
    from fiqa.embed.store import open_store

    params = parse_params(param_pairs)
    if "random_state" in params:
        raise click.BadParameter("use --seed instead of -p random_state=...", param_hint="'--param'")
    labeler = create_labeler(method, random_state=seed, **params)
    check_output(out_path, [store])  # before the work: never into the store, never over an input
    table = label_store(open_store(store), labeler)
    path = save_quality(table, out_path)
    counts = ", ".join(f"{k} {v:,}" for k, v in table.meta["status_counts"].items())
    click.echo(f"{labeler.name}: {int(table.ok.sum()):,} of {len(table):,} samples labelled ({counts}) -> {path}")
