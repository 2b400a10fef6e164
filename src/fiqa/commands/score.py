"""``fiqa score PATHS... [--model NAME_OR_PATH | --method NAME] [-o SCORES.parquet|.csv|.jsonl|-]``: quality of
photos, or of the faces of a store (``fiqa score STORE/``)."""
from __future__ import annotations

from typing import Any

import click
from click.core import ParameterSource

from fiqa.commands._common import (
    TABLE_OUT_HELP,
    check_engine,
    check_table_out,
    device_option,
    engine_options,
    info,
    note,
    out_option,
    printable,
    progress,
)


def _is_store(path: str) -> bool:
    """``path`` is a store folder; a folder that cannot be read is not (reading it as photos says why)."""
    from fiqa.store import is_store

    try:
        return is_store(path)
    except OSError:
        return False


@click.command("score")
@click.argument("paths", nargs=-1, required=True)
@click.option("--model", "model", default=None, metavar="NAME_OR_PATH",
              help="A shipped model (`fiqa models`), a model folder with a card.json, or an ONNX model written by "
                   "`fiqa train` (with the model.onnx.sha256 it writes beside it: a file that differs is refused). "
                   "Default: the shipped 'default' model.")
@click.option("--method", "method", default=None, metavar="NAME",
              help="Score with a training-free method instead of a model (`fiqa models` lists them: ser-fiq, "
                   "flip-consistency, norm).")
@out_option("Scores table to write. " + TABLE_OUT_HELP + " Without it, one line per image goes to stdout: path, "
            "score, status (tab-separated; score 'nan' when the status is not ok).", required=False,
            dest="out_path", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--aligned", is_flag=True, help="The images are aligned 112x112 face crops: skip detection.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Faces per batch. Default: the most that --memory-budget allows (at most 64).")
@click.option("--memory-budget", type=click.IntRange(min=1), default=None, metavar="MB",
              help="Peak resident memory to size the batch for, in MB (default 600: the process's memory once the "
                   "model is loaded, plus 60 MB, plus about 20 MB per face of a batch).")
@click.option("--on-error", type=click.Choice(["record", "raise"]), default="record", show_default=True,
              help="record: unreadable images and images without a face get a status and no score.")
@click.option("--components", is_flag=True,
              help="Also measure each face's quality components (`fiqa components`) and advise: columns <name> "
                   "(0-100), <name>_raw, components_reason and advice (codes; stdout shows them as a 4th column).")
@click.option("--advice-profile", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="A TOML advice profile (thresholds on the components' raw values). Default: the shipped "
                   "'enrolment' profile (`fiqa components --profile` prints it).")
# default: fiqa.components.DEFAULT_REFINEMENT_PASSES (a test keeps them equal; read here, it would load OpenCV and the
# components for --help)
@click.option("--refinement-passes", type=click.IntRange(1, 2), default=2, show_default=True,
              help="Landmark refinement passes of the pose and geometry components: 2 reads the eye distance and "
                   "yaw more precisely than 1, which saves about 0.3 ms a face (docs/components.md).")
@engine_options("scores")
@device_option("the quality model")
def command(paths: tuple[str, ...], model: str | None, method: str | None, out_path: str | None, aligned: bool,
            batch_size: int | None, memory_budget: int | None, on_error: str, components: bool,
            advice_profile: str | None, refinement_passes: int, engine: str, ray_address: str | None,
            device: str) -> None:
    """Score image files, folders (recursive) or glob patterns PATHS (quality 0-100 for a model, higher is better),
    or the faces of one embedding store (PATHS is a store folder: its stored landmarks, no new detection).

    Columns of the table: sample_id, score (NaN unless ok), status, reason, raw_score (a model's output before
    calibration), location, n_faces, detection_score (detector confidence); with --components, two columns per
    component, components_reason and advice. A store's table has identity and location instead of the detection
    columns, and its sample ids are the store's. `fiqa evaluate STORE --scores` takes either: photos of the store
    are matched to it by location.
    """
    import collections
    import math

    import numpy as np

    from fiqa.detect.pipeline import FacePipeline
    from fiqa.detect.settings import DetectionSettings
    from fiqa.io import open_source
    from fiqa.io.table import STDOUT, write_quality
    from fiqa.score import create_scorer, score_images, score_store
    from fiqa.score.method import batch_for_budget
    from fiqa.score.training_free import create_quality_method
    from fiqa.store import open_store

    check_engine(engine, ray_address, device)
    if model is not None and method is not None:
        raise click.UsageError("give --model or --method, not both")
    if engine == "ray" and method is not None:
        raise click.UsageError("--method runs on the local engine only (leave out --engine ray)")
    if advice_profile is not None and not components:
        raise click.UsageError("--advice-profile needs --components")
    passes_given = click.get_current_context().get_parameter_source("refinement_passes") != ParameterSource.DEFAULT
    if passes_given and not components:
        raise click.UsageError("--refinement-passes needs --components")
    if components and engine == "ray":
        raise click.UsageError("--components runs on the local engine only (leave out --engine ray)")
    profile = None
    if components:
        from fiqa.components import load_profile

        profile = load_profile(advice_profile)  # a bad profile fails before any image is read
    # first: a wrong model or method name (or a device this install cannot run) fails before any image is read
    scorer: Any = (create_scorer(model, device=device) if method is None
                   else create_quality_method(method, device=device))
    batch = batch_size or batch_for_budget(scorer, memory_budget, components=components)  # once the model is loaded
    store = open_store(paths[0]) if len(paths) == 1 and _is_store(paths[0]) else None
    if store is not None and (aligned or components or engine == "ray"):
        raise click.UsageError("a store is scored from its stored landmarks, locally: leave out --aligned, "
                               "--components and --engine ray")
    locations = ([] if store is not None
                 else [loc for path in paths for loc in open_source(path, kind="images").samples.location])
    if out_path is not None:  # before any work: a known format, never over an input image or folder, or a non-table
        check_table_out(out_path, [*paths, model])
    if store is not None:
        table = score_store(scorer, store, batch_size=batch, progress=progress())
    elif engine == "ray":  # (a method with the Ray engine was refused above)
        from fiqa.score.ray_scoring import score_images_ray

        table = score_images_ray(locations, model, aligned=aligned, on_error=on_error, batch_size=batch,
                                 ray_address=ray_address, progress=progress())
    else:  # the model and the training-free methods alike, with the default detection settings
        table = score_images(scorer, locations, FacePipeline(DetectionSettings(aligned=aligned)), batch_size=batch,
                             on_error=on_error, progress=progress(), components=components, advice_profile=profile,
                             refinement_passes=refinement_passes, settings={"aligned": aligned})
    counts = collections.Counter(table.status.tolist())
    scored = table.score[table.ok]
    what = "faces of the store" if store is not None else "images"
    summary = (f"{len(table)} {what}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
               + (f", median quality {np.median(scored):.1f}" if len(scored) else ""))
    if out_path is None:
        advice = table.columns["advice"] if components else None
        for i, (location, score, status) in enumerate(zip(table.columns["location"], table.score, table.status)):
            extra = f"\t{advice[i] or '-'}" if advice is not None else ""
            click.echo(f"{printable(location)}\t{'nan' if math.isnan(score) else f'{score:.1f}'}\t{status}{extra}")
        note(summary)
    elif out_path == STDOUT:
        write_quality(table, out_path)
        note(summary)
    else:
        write_quality(table, out_path)
        info(summary)
        info(f"scores: {out_path}")
    if not table.ok.any():  # every image is recorded with its reason, but nothing could be scored
        click.echo("Error: nothing could be scored", err=True)
        raise SystemExit(1)
