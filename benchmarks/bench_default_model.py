"""Time to train fiqa's default model by its recipe on all of LFW-dev, stage by stage, on this machine.

    python benchmarks/bench_default_model.py [--lfw ../shared/data/lfw-dev] [--work DIR]

What ``scripts/build_model.py`` does to make the shipped model (:func:`fiqa.train.recipe.train_recipe` with
``DEFAULT_RECIPE`` on every face of the people with >= 2 photos), in a fresh working folder: embedding (not part
of training, reported apart), then the recipe's stages as ``recipe.json`` records them: augmentation (decode,
jitter, degrade and embed the copies), labelling, feature extraction, the training loop with export. One run;
wall seconds per stage, CPU time and peak RSS of the whole. Writes ``benchmarks/results/default_model.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import emit, machine_header, results_path
from fiqa.demo import _select_samples, locate_lfw
from fiqa.detect.settings import DetectionSettings
from fiqa.embed.extract import embed_source
from fiqa.train.recipe import DEFAULT_RECIPE, train_recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", default=os.environ.get("FIQA_LFW") or "../shared/data/lfw-dev")
    parser.add_argument("--work", type=Path, default=None, help="Working folder (default: a temporary one).")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="fiqa-default-model-"))
    lfw = locate_lfw(args.lfw)
    source = _select_samples(lfw, work, min_images=2, max_identities=None, max_images_per_identity=None, random_state=0)
    started = time.perf_counter()
    store = embed_source(source, work / "store", detection=DetectionSettings(policy="central"), progress=False)
    embed_seconds = time.perf_counter() - started
    started, cpu = time.perf_counter(), time.process_time()
    trained = train_recipe(store, work / "recipe", recipe=DEFAULT_RECIPE, feature_cache_dir=work / "features",
                           progress=False)
    total, cpu = time.perf_counter() - started, time.process_time() - cpu
    stages = json.loads((work / "recipe" / "recipe.json").read_text())["seconds"]
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    lines = ["# Training the default model on all of LFW-dev", "", *machine_header(), "",
             f"Command: `python benchmarks/bench_default_model.py`; {int(store.ok.sum()):,} faces of "
             f"{len(np.unique(store.samples.identity[store.ok])):,} people; recipe `DEFAULT_RECIPE` "
             f"({DEFAULT_RECIPE.copies} copies per face, {DEFAULT_RECIPE.labeller}, {DEFAULT_RECIPE.shape}).", "",
             "| stage | wall |", "|---|---:|",
             f"| embed LFW-dev (before training; `fiqa embed`) | {embed_seconds / 60:.1f} min |"]
    order = ("augment", "label", "features", "train and export")  # the recipe's order (the JSON is key-sorted)
    lines += [f"| {name} | {stages[name] / 60:.1f} min |" for name in order if name in stages]
    lines += [f"| **training by the recipe, all stages** | **{total / 60:.1f} min** (CPU {cpu / 60:.1f} min) |", "",
              f"Peak RSS {peak_gib:.1f} GiB; best epoch {trained.result.best_epoch}, validation Spearman "
              f"{trained.result.spearman:.3f}."]
    emit("\n".join(lines) + "\n", results_path("default_model.md"))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
