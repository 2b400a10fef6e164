"""``fiqa score PATHS... --model M --out SCORES.parquet``: quality of images with an exported model."""
from __future__ import annotations

import collections

import click
import numpy as np

from ..io import open_source
from ..io.table import save_quality
from ..score import create_scorer


@click.command("score")
@click.argument("paths", nargs=-1, required=True)
@click.option("--model", "model_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="An ONNX model written by `fiqa train`.")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="Scores table (.parquet).")
@click.option("--aligned", is_flag=True, help="The images are aligned 112x112 face crops: skip detection.")
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--on-error", type=click.Choice(["record", "raise"]), default="record", show_default=True,
              help="record: unreadable images and images without a face get a status and no score.")
def command(paths: tuple[str, ...], model_path: str, out_path: str, aligned: bool, batch_size: int,
            on_error: str) -> None:
    """Score image files, folders (recursive) or glob patterns PATHS; write a table with a status per image."""
    locations = [loc for path in paths for loc in open_source(path, kind="images").samples.location]
    table = create_scorer(model_path, batch_size=batch_size).score(locations, aligned=aligned, on_error=on_error)
    save_quality(table, out_path)
    counts = collections.Counter(table.status.tolist())
    scored = table.score[table.ok]
    summary = f", median quality {np.median(scored):.1f}" if len(scored) else ""
    click.echo(f"{len(table)} images: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + summary)
    click.echo(f"scores: {out_path}")
