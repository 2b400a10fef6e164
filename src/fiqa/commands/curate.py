"""``fiqa curate LABELS -o CURATED.parquet [--store STORE --rounds K]``: a stratified seed set and the flywheel."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from fiqa.commands._common import check_out, info, out_option, require_torch

if TYPE_CHECKING:
    import numpy as np


def _read_attributes(path: str, sample_id: np.ndarray) -> dict[str, np.ndarray]:
    """Columns of a CSV with a ``sample_id`` column, aligned with ``sample_id`` ("" where a sample is absent)."""
    import csv

    import numpy as np

    from fiqa.core.errors import DataSourceError

    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or "sample_id" not in rows[0]:
        raise DataSourceError(f"{path}: an attributes CSV needs a header with a 'sample_id' column")
    names = [name for name in rows[0] if name != "sample_id"]
    try:
        index = {int(row["sample_id"]): row for row in rows}
    except ValueError as exc:
        raise DataSourceError(f"{path}: sample_id values must be integers ({exc})") from None
    return {name: np.array([index.get(int(s), {}).get(name, "") for s in sample_id], dtype=object)
            for name in names}


@click.command("curate")
@click.argument("labels", type=click.Path(exists=True, dir_okay=False))
@out_option("Curated list to write (Parquet + .json sidecar), with <stem>.report.json / .report.md.",
            dest="out_path", type=click.Path(dir_okay=False))
@click.option("--cluster-column", default="auto", show_default=True,
              help="Labels column that groups samples inside an identity ('auto': the coarsest cluster_<k>; "
                   "'none': identity only).")
@click.option("--attributes", "attributes_csv", type=click.Path(exists=True, dir_okay=False), default=None,
              help="CSV with a sample_id column; its other columns split the groups further.")
@click.option("--strata", "n_strata", type=int, default=3, show_default=True, help="Quality bands per group.")
@click.option("--per-stratum", type=int, default=1, show_default=True, help="Samples kept per group and band.")
@click.option("--random-state", type=int, default=0, show_default=True)
@click.option("--rounds", type=int, default=0, show_default=True,
              help="Flywheel rounds: retrain the regressor on the curated seed (needs --store) and re-score.")
@click.option("--store", "store_path", type=click.Path(exists=True, file_okay=False), default=None,
              help="The embedding store of LABELS (for --rounds).")
@click.option("--epochs", type=int, default=10, show_default=True, help="Regressor epochs per flywheel round.")
def command(labels: str, out_path: str, cluster_column: str, attributes_csv: str | None, n_strata: int,
            per_stratum: int, random_state: int, rounds: int, store_path: str | None, epochs: int) -> None:
    """Keep a stratified seed set of LABELS: every cluster, high / middle / low quality, near-duplicates once.

    --rounds needs PyTorch: pip install 'fiqa[train]'.
    """
    from fiqa.curate import curate, flywheel
    from fiqa.io.table import check_output, load_quality

    check_output(out_path, [p for p in (labels, store_path, attributes_csv) if p])  # the one output rule, too
    if rounds > 0:  # the models of the rounds go to a folder beside it
        check_out(str(Path(out_path).with_suffix("")), labels, store_path, attributes_csv)
    table = load_quality(labels)
    params: dict[str, Any] = {
        "cluster_column": None if cluster_column == "none" else cluster_column, "n_strata": n_strata,
        "per_stratum": per_stratum, "random_state": random_state,
        "attributes": _read_attributes(attributes_csv, table.sample_id) if attributes_csv else None}
    if rounds < 0:
        raise click.BadParameter("must be >= 0", param_hint="'--rounds'")
    if rounds == 0:
        curation = curate(table, **params)
    else:
        if store_path is None:
            raise click.UsageError("--rounds needs --store (the regressor trains on the store's crops)")
        require_torch("fiqa curate --rounds")
        from fiqa.score import create_scorer, score_store
        from fiqa.store import open_store
        from fiqa.train import TrainConfig, train_regressor

        store = open_store(store_path)
        out_dir = Path(out_path).with_suffix("")

        def retrain(seed_labels, round_index):
            trained = train_regressor(store, seed_labels, out_dir / f"round-{round_index + 1}",
                                      config=TrainConfig(epochs=epochs, random_state=random_state))
            return score_store(create_scorer(trained.model_path), store, progress=False)

        history = flywheel(table, retrain, rounds=rounds, **params)
        for index, step in enumerate(history, start=1):
            step.curation.save(out_dir / f"round-{index}" / "curated.parquet")
        curation = curate(history[-1].quality, **params)
        info(f"{rounds} flywheel round(s); models and per-round lists under {out_dir}")
    table_path, json_path, md_path = curation.save(out_path)
    info(f"kept {int(curation.kept.sum()):,} of {curation.report['n_candidates']:,} labelled samples "
         f"in {curation.report['n_groups']:,} groups -> {table_path} ({md_path.name}, {json_path.name})")
