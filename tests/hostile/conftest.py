"""Shared inputs of the hostile-case replay, built once per session in one scratch folder: the good data set and
its store, labels and a small trained model; the bad-input data set and its store. Every case reads them and
writes only below its own folder.

Each case's outcome (and what it observed, ``record_property("observed", ...)``) is collected; with
``$FIQA_HOSTILE_RESULTS`` set to a file path they are written there as JSON when the session ends
(``scripts/hostile.sh`` prints them as a table).
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from hostile import fixtures
from hostile.harness import EMBED_GOOD, TRAIN, Run, assert_ok, batch_unprivileged, cli, unprivileged_prefix

_CASE = re.compile(r"::test_([A-Z]\d\d)_")
_results: dict[str, dict] = {}
_scratch: list[str] = []  # the session's scratch folder, shown as WORK in the results


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    match = _CASE.search(report.nodeid)
    if match is None or (report.when != "call" and report.outcome == "passed"):
        return
    crash = getattr(report.longrepr, "reprcrash", None)
    message = crash.message if crash is not None else (str(report.longrepr[-1]) if isinstance(
        report.longrepr, tuple) else "")
    observed = str(dict(report.user_properties).get("observed", ""))
    for folder in _scratch:
        observed, message = observed.replace(folder, "WORK"), message.replace(folder, "WORK")
    entry = {"outcome": report.outcome, "when": report.when, "seconds": round(report.duration, 2),
             "observed": observed, "message": message, "nodeid": report.nodeid}
    previous = _results.get(match.group(1))
    if previous is None or previous["outcome"] == "passed":
        _results[match.group(1)] = entry


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = os.environ.get("FIQA_HOSTILE_RESULTS")
    if path and _results:
        Path(path).write_text(json.dumps(_results, indent=1, sort_keys=True), encoding="utf-8")


# ----------------------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The scratch folder of the whole replay."""
    folder = tmp_path_factory.mktemp("hostile")
    _scratch.append(str(folder))
    return folder


@pytest.fixture(scope="session")
def lfw(lfw_dir: Path) -> Path:
    return lfw_dir


@pytest.fixture(scope="session")
def good_dir(lfw: Path, work: Path) -> Path:
    return fixtures.make_good(lfw, work / "data")


@pytest.fixture(scope="session")
def good_store(good_dir: Path, work: Path) -> Path:
    """The store of ``good_dir`` (made with :data:`EMBED_GOOD`; 24 ok samples)."""
    out = work / "out" / "good"
    assert_ok(cli("embed", good_dir, "--out", out, *EMBED_GOOD))
    return out


@pytest.fixture(scope="session")
def good_labels(good_store: Path, work: Path) -> dict[str, Path]:
    """``sdd``, ``norm`` and ``random`` labels of the good store."""
    found = {}
    for method in ("sdd", "norm", "random"):
        found[method] = work / "labels" / f"good_{method}.parquet"
        assert_ok(cli("label", good_store, "-m", method, "--out", found[method]))
    return found


@pytest.fixture(scope="session")
def model_dir(good_store: Path, good_labels: dict[str, Path], work: Path) -> Path:
    """A model trained uninterrupted on the good store's sdd labels with :data:`TRAIN` (``model.onnx``,
    ``head.onnx``, ``checkpoint.pt``): the reference of the interruption cases."""
    out = work / "models" / "full"
    assert_ok(cli("train", good_store, good_labels["sdd"], "--out", out, *TRAIN))
    return out


@pytest.fixture(scope="session")
def model(model_dir: Path) -> Path:
    return model_dir / "model.onnx"


@pytest.fixture(scope="session")
def bad_dir(lfw: Path, work: Path) -> Path:
    return fixtures.make_bad(lfw, work / "data")


@pytest.fixture(scope="session")
def bad_store(bad_dir: Path, work: Path):
    """The store of ``bad_dir`` (one ``fiqa embed`` run, as in 0.1.0: E01-E20) and the run itself."""
    from fiqa.store import open_store

    out = work / "out" / "bad_store"
    run = cli("embed", bad_dir, "--out", out, "--batch-size", "8")
    return run, (open_store(out) if (out / "meta.json").exists() else None)


@pytest.fixture(scope="session")
def bad_rows(bad_store) -> dict[str, dict]:
    """Per file name (``Folder/name``) of the bad store: status, reason, n_faces and the cosine with the
    reference face (``Variants/00_original.jpg``)."""
    run, store = bad_store
    assert_ok(run)
    vectors = np.asarray(store.vectors, dtype=np.float64)
    names = ["/".join(Path(str(location)).parts[-2:]) for location in store.samples.location]
    reference = vectors[names.index("Variants/00_original.jpg")]
    return {name: {"status": str(store.status[i]), "reason": str(store.reason[i]), "n_faces": int(store.n_faces[i]),
                   "cosine": float(vectors[i] @ reference)} for i, name in enumerate(names)}


@pytest.fixture(scope="session")
def small_stores(lfw: Path, work: Path) -> dict[str, Path]:
    """``lab_single`` (3 identities x 4 photos and ``Lonely_One`` with 1) and ``lab_allsingle`` (6 x 1)."""
    people = fixtures.good_people(lfw, 9)
    single_dir = fixtures.make_subset(lfw, work / "data", "lab_single", dict.fromkeys(people[6:9], 4))
    (single_dir / "Lonely_One").mkdir()
    (single_dir / "Lonely_One" / "lonely.jpg").write_bytes(fixtures.photo(lfw, "Yao_Ming", 8).read_bytes())
    allsingle_dir = fixtures.make_subset(lfw, work / "data", "lab_allsingle", dict.fromkeys(people[:6], 1))
    stores = {}
    for name, folder in (("lab_single", single_dir), ("lab_allsingle", allsingle_dir)):
        stores[name] = work / "out" / name
        assert_ok(cli("embed", folder, "--out", stores[name], "--batch-size", "8"))
    return stores


@pytest.fixture(scope="session")
def unprivileged_runs(lfw: Path, work: Path, model: Path) -> dict[str, Run]:
    """The permission cases (E31-E35, S10-S12), run in one child process without DAC capabilities (as root,
    ``capsh --drop``), so that mode 000 folders and files are really unreadable."""
    if unprivileged_prefix() is None:
        pytest.skip("running as root without capsh: permission bits cannot be made to apply")
    made = fixtures.make_permissions(lfw, work / "data")
    out, scores = work / "out" / "perm", work / "scores" / "perm"
    out.mkdir(parents=True)
    scores.mkdir(parents=True)
    commands = {
        "E31_folder": ["embed", made["root0"], "--kind", "folder", "--out", out / "E31_folder"],
        "E31_auto": ["embed", made["root0"], "--out", out / "E31_auto"],
        "E32": ["embed", made["root0"], "--kind", "images", "--out", out / "E32"],
        "E33": ["embed", made["sub0"], "--kind", "folder", "--out", out / "E33"],
        "E34": ["embed", made["sub0"], "--kind", "images", "--out", out / "E34"],
        "E35_folder": ["embed", made["file0"], "--kind", "folder", "--out", out / "E35_folder", "--workers", "1"],
        "E35_images": ["embed", made["file0"], "--kind", "images", "--out", out / "E35_images"],
        "S10": ["score", made["root0"], "--model", model, "--out", scores / "S10.parquet"],
        "S11": ["score", made["sub0"], "--model", model, "--out", scores / "S11.parquet"],
        "S12": ["score", made["file0"], "--model", model, "--out", scores / "S12.parquet"],
    }
    try:
        answers = batch_unprivileged(list(commands.values()), work)
    finally:
        fixtures.restore_permissions(made)
    return {key: Run([str(a) for a in command], answer["code"], answer["output"], answer["traceback"])
            for (key, command), answer in zip(commands.items(), answers)}


@pytest.fixture(scope="session")
def names_dir(lfw: Path, work: Path) -> Path:
    return fixtures.make_names(lfw, work / "data")


@pytest.fixture(scope="session")
def newline_dir(lfw: Path, work: Path) -> Path:
    return fixtures.make_newline_name(lfw, work / "data")


@pytest.fixture(scope="session")
def non_utf8_dir(lfw: Path, work: Path) -> Path:
    return fixtures.make_non_utf8_name(lfw, work / "data")


@pytest.fixture(scope="session")
def symlink_loops(lfw: Path, work: Path) -> Path:
    return fixtures.make_symlink_loops(lfw, work / "data")


@pytest.fixture(scope="session")
def dir_loops(lfw: Path, work: Path) -> Path:
    return fixtures.make_dir_loops(lfw, work / "data")


@pytest.fixture(scope="session")
def tiff_bomb(work: Path) -> Path:
    return fixtures.make_tiff_bomb(work / "data")


@pytest.fixture(scope="session")
def empty_dir(work: Path) -> Path:
    (work / "data" / "empty_folder").mkdir(parents=True)
    return work / "data" / "empty_folder"
