"""``fiqa augment STORE --out STORE2 --copies K``: add degraded copies of a store's faces, embedded, to a new store."""
from __future__ import annotations

from typing import Literal

import click

from fiqa.commands._common import LazyDefault, check_out, info, out_option, progress


@click.command("augment")
@click.argument("store", type=click.Path(file_okay=False))
@out_option("The store folder to write.", type=click.Path(file_okay=False))
@click.option("--copies", type=int, default=2, show_default=True, help="Degraded copies per parent sample.")
@click.option("--random-state", type=int, default=0, show_default=True, help="Seed of the recipes.")
@click.option("--kinds", default=LazyDefault("fiqa.augment.degrade", "DEGRADATIONS", ",".join), show_default=True,
              help="Degradations to draw from, comma-separated.")
@click.option("--severity-min", type=float, default=0.2, show_default=True, help="Lowest severity, in [0, 1].")
@click.option("--severity-max", type=float, default=1.0, show_default=True, help="Highest severity, in [0, 1].")
@click.option("--clean-fraction", type=float, default=0.1, show_default=True,
              help="Fraction of copies with geometric jitter only, no degradation.")
@click.option("--combined-fraction", type=float, default=0.25, show_default=True,
              help="Fraction of copies with two degradations in a row.")
@click.option("--geometry/--no-geometry", default=True, show_default=True,
              help="Jitter shift, scale, rotation and mirror the alignment of each copy.")
@click.option("--originals/--no-originals", default=True, show_default=True,
              help="Copy the rows of STORE into the output before the derived rows.")
@click.option("--rows-from", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Only samples of these identities get copies: a split JSON (its --part) or a text file, one "
                   "identity per line.")
@click.option("--part", type=click.Choice(["train", "test"]), default="train", show_default=True,
              help="Which part of a split JSON given to --rows-from.")
@click.option("--batch-size", type=int, default=64, show_default=True, help="Crops per embedder call.")
@click.option("--chunk-size", type=int, default=1024, show_default=True, help="Derived rows per resumable chunk.")
@click.option("--resume/--no-resume", default=True, show_default=True,
              help="Continue an interrupted run into --out, or start over.")
@click.option("--workers", type=int, default=None, help="Decode/warp threads [default: CPU count].")
def command(store: str, out: str, copies: int, random_state: int, kinds: str, severity_min: float, severity_max: float,
            clean_fraction: float, combined_fraction: float, geometry: bool, originals: bool, rows_from: str | None,
            part: Literal["train", "test"], batch_size: int, chunk_size: int, resume: bool,
            workers: int | None) -> None:
    """Add --copies degraded copies of each usable sample of STORE (blur, down-sampling, JPEG, noise, low light,
    occlusion, misalignment), embedded with STORE's backend, to a new store at --out."""
    check_out(out, store, rows_from)  # before any work: never the parent store or inside it
    import numpy as np

    from fiqa.augment.copies import augment_store
    from fiqa.store import open_store

    parent = open_store(store)
    rows = None
    if rows_from is not None:
        from fiqa.core.identities import read_identity_list

        names = read_identity_list(rows_from, part)
        rows = np.isin(parent.samples.identity.astype(str), names.astype(str))
        if not rows.any():
            raise click.BadParameter(f"none of the {len(names):,} identities of {rows_from} ({part}) is in {store}",
                                     param_hint="'--rows-from'")
    result = augment_store(
        parent,
        out,
        copies=copies,
        random_state=random_state,
        kinds=kinds,
        severity=(severity_min, severity_max),
        geometry=geometry,
        clean_fraction=clean_fraction,
        combined_fraction=combined_fraction,
        keep_originals=originals,
        rows=rows,
        batch_size=batch_size,
        chunk_size=chunk_size,
        resume=resume,
        n_workers=workers,
        progress=progress(),
    )
    summary = result.meta.augmentation or {}
    info(
        f"{result.root}: {summary['n_originals']:,} original and {summary['n_derived']:,} derived samples "
        f"({summary['n_parents']:,} parents x {summary['copies']} copies)"
    )
    for status, count in summary["derived_counts"].items():
        info(f"  derived {status:<16}{count:>10,d}")
    for status, count in summary["skipped_parents"].items():
        info(f"  no copies, {status:<13}{count:>10,d}")
    if summary["n_derived"] and not summary["derived_counts"].get("ok"):  # recorded with reasons, none usable
        click.echo("no copy could be embedded", err=True)
        raise SystemExit(1)
