"""``fiqa embed SOURCE --out STORE``: detect, align and embed a data source into an embedding store."""
from __future__ import annotations

import collections

import click

from fiqa.commands._common import (
    LazyDefault,
    check_engine,
    check_out,
    device_option,
    engine_options,
    info,
    out_option,
    progress,
)

SOURCE_KINDS = ("folder", "list", "recordio", "images")
"""fiqa.io.sources.KINDS, spelled out so that ``fiqa --help`` need not import OpenCV (a test keeps them equal)."""


@click.command("embed")
@click.argument("source")
@out_option("The store folder to write.", type=click.Path(file_okay=False))
@click.option("--kind", type=click.Choice(SOURCE_KINDS), default=None,
              help="Source kind; detected from the path when omitted.")
@click.option("--allow-outside", is_flag=True,
              help="List files: also read entries that resolve (links followed) outside the list file's folder. "
                   "Without it each such entry is recorded as unreadable, with the reason, and not opened.")
@click.option("--backend", default="sface", show_default=True, help="Recognition backend (registry name).")
@click.option("--recogniser-model", "model", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The recognition network's ONNX file, for --backend onnx.")
@click.option("--spec", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Preprocessing spec (JSON/TOML: input size, mean, std, channel order), for --backend onnx.")
@click.option("--aligned", is_flag=True, help="Input images are already aligned 112x112 crops: skip detection.")
@click.option("--batch-size", type=int, default=64, show_default=True, help="Crops per embedder call.")
@click.option("--chunk-size", type=int, default=1024, show_default=True, help="Samples per resumable chunk.")
@click.option("--resume/--no-resume", default=True, show_default=True,
              help="Continue an interrupted run into --out, or start over.")
@click.option("--on-error", type=click.Choice(["record", "raise"]), default="record", show_default=True,
              help="record: keep failed samples with a status and reason; raise: stop at the first failure.")
@click.option("--policy", type=click.Choice(["largest", "central"]), default="largest", show_default=True,
              help="Which face to keep when an image has several.")
@click.option("--score-threshold", type=float, default=0.7, show_default=True, help="Face detector confidence.")
@click.option("--max-pixels", type=int, default=LazyDefault("fiqa.io.image", "DEFAULT_MAX_PIXELS"),
              show_default=True,
              help="Refuse larger images (decompression-bomb guard).")
@click.option("--min-side", type=int, default=LazyDefault("fiqa.io.image", "DEFAULT_MIN_SIDE"),
              show_default=True,
              help="Refuse images whose shorter side is smaller.")
@click.option("--workers", type=int, default=None,
              help="Decode/detect threads (--engine local) or Ray workers (--engine ray) [default: CPU count].")
@engine_options("store")
@click.option("--features/--no-features", default=None,
              help="Also store the default quality head's input, from the same SFace run (float16, 2 KiB per "
                   "image), so that 'fiqa train' needs no second SFace pass. [default: on with --backend sface, "
                   "unless resuming a run made without; else off]")
@device_option("the recognition network (onnxruntime backends)")
def command(source: str, out: str, kind: str | None, backend: str, model: str | None, spec: str | None,
            aligned: bool, batch_size: int, chunk_size: int, resume: bool, on_error: str, policy: str,
            score_threshold: float, max_pixels: int, min_side: int, workers: int | None, engine: str,
            ray_address: str | None, features: bool | None, device: str, allow_outside: bool) -> None:
    """Embed every image of SOURCE (folder per identity, list file, train.rec, or images) into a store."""
    from fiqa.detect.settings import DetectionSettings
    from fiqa.embed.extract import embed_source
    from fiqa.io import open_source

    check_out(out, source, model, spec)  # before any work: never the source or inside it
    check_engine(engine, ray_address, device)
    if features and backend != "sface":
        raise click.UsageError("--features needs --backend sface (the features are SFace's pooled maps)")
    backend_params = {name: value for name, value in (("model", model), ("spec", spec)) if value is not None}
    if device != "cpu":  # only the onnxruntime backends take a device; the others refuse it by name
        backend_params["device"] = device
    detection = DetectionSettings(aligned=aligned, policy=policy, score_threshold=score_threshold,
                                  max_pixels=max_pixels, min_side=min_side)
    opened = open_source(source, kind=kind, allow_outside=allow_outside)
    store = embed_source(opened, out, backend=backend, backend_params=backend_params,
                         detection=detection, batch_size=batch_size, chunk_size=chunk_size, resume=resume,
                         on_error=on_error, features="auto" if features is None else features, engine=engine,
                         n_workers=workers, engine_options={"ray_address": ray_address} if engine == "ray" else None,
                         progress=progress())
    backend_name = store.meta.backend.get("backend", backend)
    info(f"{store.root}: {len(store)} samples, {store.dim}-D {backend_name}")  # info escapes the line
    if store.meta.feature_dim is not None:
        info(f"  with {store.meta.feature_dim:,d} feature values per image (float16, features.npy)")
    for status, count in store.meta.counts.items():
        info(f"  {status:<16}{count:>10,d}")
    failed = collections.Counter(f"{s}: {r}" for s, r in zip(store.status, store.reason) if s != "ok")
    if failed:
        info("most common failures:")
        for text, count in failed.most_common(5):
            info(f"  {count:>8,d}  {text}")
