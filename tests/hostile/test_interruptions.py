"""Hostile cases I01-I08: ``kill -9`` at chosen points, then the same command again; two writers into one folder
(hostile-cases.md, section 5). After every kill, every file under its final name must parse (never half a file);
the re-run must give the result of an uninterrupted run, byte for byte (metadata times and command lines aside)."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from hostile.harness import EMBED_GOOD, TRAIN, assert_ok, cli, error_line, kill_when, start, temporaries

pytestmark = [pytest.mark.lfw, pytest.mark.slow]

VOLATILE = {"argv", "created_utc"}
"""Metadata keys that name the command line and the time, not the result."""


def unparsable(folder: Path) -> list[str]:
    """Files below ``folder`` under their final name (not ``.tmp``) that do not parse completely."""
    import onnx
    import pyarrow.parquet as pq
    import torch

    bad = []
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file() and ".tmp" not in p.name):
        try:
            if path.suffix == ".npz":
                with np.load(path, allow_pickle=False) as data:
                    for key in data.files:
                        data[key]
            elif path.suffix == ".npy":
                np.load(path, allow_pickle=False)
            elif path.suffix == ".json":
                json.loads(path.read_text(encoding="utf-8"))
            elif path.suffix == ".parquet":
                pq.read_table(path)
            elif path.suffix == ".onnx":
                onnx.checker.check_model(onnx.load(path))
            elif path.suffix == ".pt":
                torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # any failure to parse is what is looked for
            bad.append(f"{path.relative_to(folder)}: {type(exc).__name__}: {str(exc)[:120]}")
    return bad


def same_store(reference: Path, other: Path) -> list[str]:
    """Files of two stores that differ: arrays and the sample table byte for byte, ``meta.json`` apart from its
    command line and time."""
    differ = [name for name in ("vectors.npy", "norms.npy", "landmarks.npy", "samples.parquet",
                                "samples.parquet.json")
              if (reference / name).read_bytes() != (other / name).read_bytes()]
    metas = [{k: v for k, v in json.loads((root / "meta.json").read_text()).items() if k not in VOLATILE}
             for root in (reference, other)]
    return differ + (["meta.json"] if metas[0] != metas[1] else [])


def _chunks(partial: Path) -> int:
    return len(list(partial.glob("chunk-*.npz"))) if partial.is_dir() else 0


def test_I01_embed_killed_after_three_chunks(good_dir, good_store, work, record_property):
    out = work / "out" / "i01"
    partial = Path(f"{out}.partial")
    child = start("embed", good_dir, "--out", out, *EMBED_GOOD, log=work / "i01.log")
    assert kill_when(child, lambda: _chunks(partial) >= 3), (work / "i01.log").read_text()[-2000:]
    killed_at, broken = _chunks(partial), unparsable(partial)
    assert broken == [], broken
    rerun = cli("embed", good_dir, "--out", out, *EMBED_GOOD)
    assert_ok(rerun)
    differ = same_store(good_store, out)
    record_property("observed", f"killed with {killed_at}/6 chunks, every file parses; re-run resumed; differing "
                                f"files: {differ or 'none'}")
    assert differ == [] and not partial.exists() and temporaries(out) == []


def test_I02_embed_killed_repeatedly(good_dir, good_store, work, record_property):
    out = work / "out" / "i02"
    partial = Path(f"{out}.partial")
    rng = np.random.default_rng(2)
    kills = []
    for attempt in range(3):  # each run is killed a seeded 0-2 chunks after it has added one
        target = _chunks(partial) + 1 + int(rng.integers(0, 2))
        child = start("embed", good_dir, "--out", out, *EMBED_GOOD, log=work / f"i02_{attempt}.log")
        if kill_when(child, lambda: _chunks(partial) >= target):  # noqa: B023 - called before the next round
            kills.append(_chunks(partial))
            assert unparsable(partial) == [] and (not out.exists() or unparsable(out) == [])
    rerun = cli("embed", good_dir, "--out", out, *EMBED_GOOD)
    assert_ok(rerun)
    differ = same_store(good_store, out)
    record_property("observed", f"{len(kills)} kills (with {kills} of 6 chunks done), every file parsed each "
                                f"time; differing files: {differ or 'none'}")
    assert len(kills) >= 2 and differ == [] and temporaries(out) == []


def test_I03_embed_killed_as_the_last_chunk_appears(good_dir, good_store, work, record_property):
    out = work / "out" / "i03"
    partial = Path(f"{out}.partial")
    child = start("embed", good_dir, "--out", out, *EMBED_GOOD, log=work / "i03.log")
    killed = kill_when(child, lambda: (partial / "chunk-0000005.npz").exists() or (partial / "store").exists())
    assert killed, (work / "i03.log").read_text()[-2000:]
    state = sorted(p.name for p in partial.iterdir()) if partial.exists() else []
    assert unparsable(partial) == [] and (not out.exists() or unparsable(out) == [])
    assert_ok(cli("embed", good_dir, "--out", out, *EMBED_GOOD))
    differ = same_store(good_store, out)
    record_property("observed", f"killed at the last chunk ({len(state)} files in .partial); re-run: differing "
                                f"files {differ or 'none'}")
    assert differ == [] and temporaries(out) == []


def _same_files(reference: Path, other: Path, names: tuple[str, ...]) -> list[str]:
    return [name for name in names if (reference / name).read_bytes() != (other / name).read_bytes()]


def test_I04_train_killed_after_an_epoch(good_store, good_labels, model_dir, work, record_property):
    out = work / "models" / "i04"
    for _ in range(3):  # an epoch takes a fraction of a second: catch the run between two epochs
        shutil.rmtree(out, ignore_errors=True)
        child = start("train", good_store, good_labels["sdd"], "--out", out, *TRAIN, log=work / "i04.log")
        if kill_when(child, lambda: (out / "checkpoint.pt").exists()) and not (out / "model.onnx").exists():
            break
    else:
        pytest.fail("training finished before it could be killed after an epoch, 3 times")
    broken = unparsable(out)
    assert broken == [], broken
    import torch

    epoch = torch.load(out / "checkpoint.pt", weights_only=True)["epoch"]
    rerun = cli("train", good_store, good_labels["sdd"], "--out", out, *TRAIN)
    assert_ok(rerun)
    differ = _same_files(model_dir, out, ("model.onnx", "head.onnx", "history.json"))
    record_property("observed", f"killed after epoch {epoch}; re-run resumed; differing from the uninterrupted "
                                f"model: {differ or 'none'}")
    assert differ == [] and temporaries(out) == []


def _initializers(path: Path) -> dict[str, bytes]:
    import onnx

    return {t.name: t.SerializeToString() for t in onnx.load(path).graph.initializer}


def test_I05_train_killed_while_caching_features(good_dir, good_labels, work, record_property):
    # a store without feature columns (--no-features): training computes the features into a cache in the store
    plain = work / "out" / "i05_plain"
    assert_ok(cli("embed", good_dir, "--out", plain, *EMBED_GOOD, "--no-features"))
    reference_store, store = work / "out" / "i05_reference_store", work / "out" / "i05_store"
    shutil.copytree(plain, reference_store)
    shutil.copytree(plain, store)
    reference = work / "models" / "i05_reference"
    assert_ok(cli("train", reference_store, good_labels["sdd"], "--out", reference, *TRAIN))  # uninterrupted
    out = work / "models" / "i05"
    cache = store / "features"
    child = start("train", store, good_labels["sdd"], "--out", out, *TRAIN, log=work / "i05.log")
    killed = kill_when(child, lambda: cache.is_dir() and any(p.suffix == ".npy" for p in cache.iterdir()))
    assert killed, (work / "i05.log").read_text()[-2000:]
    broken = unparsable(store) + (unparsable(out) if out.exists() else [])
    assert broken == [], broken
    assert_ok(cli("train", store, good_labels["sdd"], "--out", out, *TRAIN))
    same_weights = _initializers(out / "model.onnx") == _initializers(reference / "model.onnx")
    reference_cache = sorted((reference_store / "features").glob("*.npy"))
    same_cache = bool(reference_cache) and [p.read_bytes() for p in reference_cache] == [
        (cache / p.name).read_bytes() if (cache / p.name).exists() else b"" for p in reference_cache]
    stale = [p.name for p in temporaries(out) + temporaries(cache)]
    record_property("observed", f"killed while the feature cache was filled; re-run: weights identical "
                                f"{same_weights}, cache identical {same_cache}, temporary files left "
                                f"{stale or 'none'}")
    assert same_weights and same_cache
    assert stale == [], f"temporary files of the killed run are left in {cache}: {stale}"


def test_I06_train_killed_during_export(good_store, good_labels, model_dir, work, record_property):
    out = work / "models" / "i06"
    points = {"head.onnx in place": lambda: (out / "head.onnx").exists(),
              "model.onnx being written": lambda: any(p.name.startswith(".model.onnx.tmp") for p in out.iterdir())}
    observed = []
    for label, condition in points.items():
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(model_dir, out, ignore=shutil.ignore_patterns("*.onnx", "metrics.json", "split.json",
                                                                      "training.png", "history.json"))
        child = start("train", good_store, good_labels["sdd"], "--out", out, *TRAIN, log=work / "i06.log")
        killed = kill_when(child, condition)
        broken = unparsable(out)
        observed.append(f"{label}: {'killed' if killed else 'finished first'}, {len(broken)} broken")
        assert broken == [], (label, broken)
    assert_ok(cli("train", good_store, good_labels["sdd"], "--out", out, *TRAIN))
    differ = _same_files(model_dir, out, ("model.onnx", "head.onnx"))
    stale = [p.name for p in temporaries(out)]
    record_property("observed", "; ".join(observed) + f"; re-run: differing {differ or 'none'}, "
                                                      f"temporary files left {stale or 'none'}")
    assert differ == []
    assert stale == [], f"temporary files of the killed runs are left in {out}: {stale}"


def test_I07_label_killed_while_replacing_a_table(good_store, work, record_property):
    from fiqa.core.errors import StoreError
    from fiqa.io.table import load_quality, sidecar_path

    path = work / "labels" / "killlab.parquet"
    folder = path.parent
    assert_ok(cli("label", good_store, "-m", "norm", "--out", path))
    norm = load_quality(path)
    points = {"table being written": lambda: any(p.name.startswith(".killlab.parquet.tmp") for p in folder.iterdir()),
              "sidecar being written": lambda: any(p.name.startswith(".killlab.parquet.json.tmp")
                                                   for p in folder.iterdir()),
              "sidecar replaced": lambda: "sdd" in sidecar_path(path).read_text(encoding="utf-8")}
    seen = []
    for label, condition in points.items():
        child = start("label", good_store, "-m", "sdd", "--out", path, log=work / "i07.log")
        killed = kill_when(child, condition)
        try:
            table = load_quality(path)
        except StoreError as exc:  # a table beside another write's sidecar: detected, named
            assert "do not belong together" in str(exc) and str(path) in str(exc)
            seen.append(f"{label}: {'killed' if killed else 'finished'}, mismatch detected")
            continue
        method = table.meta["method"]
        same = np.array_equal(table.score, norm.score, equal_nan=True)
        assert (method == "norm") == same, f"{label}: the sidecar says {method} but the values are " \
                                           f"{'norm' if same else 'not norm'}'s"
        seen.append(f"{label}: {'killed' if killed else 'finished'}, consistent {method} table")
    assert_ok(cli("label", good_store, "-m", "sdd", "--out", path))
    stale = [p.name for p in temporaries(folder) if p.name.startswith(".killlab")]
    record_property("observed", "; ".join(seen) + f"; re-run: {load_quality(path).meta['method']}; temporary files "
                                                  f"left {stale or 'none'}")
    assert load_quality(path).meta["method"] == "sdd"
    assert stale == [], f"temporary files of the killed runs are left beside {path}: {stale}"


def test_I08_two_embeds_into_one_folder(good_dir, good_store, work, record_property):
    out = work / "out" / "i08"
    first = start("embed", good_dir, "--out", out, *EMBED_GOOD, log=work / "i08.log")
    plan = Path(f"{out}.partial") / "plan.json"
    deadline = time.monotonic() + 120
    while not plan.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert plan.exists() and first.poll() is None, "the first run never started writing"
    # the second run starts at once (in this process: no interpreter start-up, so the first is still at work)
    second = cli("embed", good_dir, "--out", out, *EMBED_GOOD)
    first_was_running = first.poll() is None
    first_code = first.wait(timeout=300)
    record_property("observed", f"second: exit {second.code} '{error_line(second)}'; first: exit {first_code}")
    assert first_was_running, "the first run ended before the second one started: no overlap to test"
    assert second.traceback is None and second.code == 1, str(second)
    assert "another fiqa run is writing this output" in second.output and str(out) in second.output
    assert first_code == 0, (work / "i08.log").read_text()[-2000:]
    assert same_store(good_store, out) == [] and temporaries(out) == []
