"""Hostile cases L01-L16: ``fiqa label`` on identity edge cases, damaged stores, every labeller; ``fiqa verify`` and
``fiqa evaluate`` on damaged stores (hostile-cases.md, section 4)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from hostile.harness import Run, assert_clean_error, assert_ok, cli, error_line, summary

pytestmark = pytest.mark.lfw

N_GOOD = 24  # samples of the good store


def _methods() -> list[str]:
    from fiqa.label import list_labelers

    return list_labelers()


def _label_all(store: Path, tag: str, work: Path) -> dict[str, tuple[Run, Path]]:
    """``fiqa label STORE -m M --out labels/<tag>_<M>.parquet`` for every labelling method."""
    runs = {}
    for method in _methods():
        out = work / "labels" / f"{tag}_{method}.parquet"
        runs[method] = (cli("label", store, "-m", method, "--out", out), out)
    return runs


def _failed_cleanly(runs: dict[str, tuple[Run, Path]], *needles: str) -> str:
    """Every method failed with a clear message (containing the needles) and wrote nothing."""
    for run, out in runs.values():
        assert_clean_error(run, *needles)
        assert not out.exists(), out
    messages = sorted({error_line(run) for run, _ in runs.values()})
    return f"{len(runs)} methods exit 1: " + " | ".join(messages[:2]) + (" | ..." if len(messages) > 2 else "")


def _copy_store(good_store: Path, work: Path, name: str) -> Path:
    target = work / "out" / name
    shutil.copytree(good_store, target, ignore=shutil.ignore_patterns("features"))
    return target


def _edit_vectors(store: Path, edit) -> None:
    vectors = np.load(store / "vectors.npy", mmap_mode="r+")
    edit(vectors)
    vectors.flush()
    del vectors


def _rewrite_samples(store: Path, work: Path, reorder: np.ndarray) -> None:
    """Replace the store's sample table by its rows ``reorder`` (a valid table and sidecar, written outside the
    store and moved in, as a hand edit would be)."""
    from fiqa.io.table import read_table, sidecar_path, write_table

    columns, meta = read_table(store / "samples.parquet")
    scratch = work / "scratch" / store.name / "samples.parquet"
    write_table(scratch, {name: values[reorder] for name, values in columns.items()}, meta)
    shutil.move(scratch, store / "samples.parquet")
    shutil.move(sidecar_path(scratch), sidecar_path(store / "samples.parquet"))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def test_L01_list(record_property):
    run = cli("label", "--list")
    assert_ok(run)
    record_property("observed", f"{len(_methods())} methods listed: {', '.join(_methods())}")
    for method in _methods():
        assert method in run.output
    assert run.output.count("parameters:") == len(_methods())


def _labelled(run: Run, out: Path):
    from fiqa.io.table import load_quality

    assert_ok(run)
    return load_quality(out)


def test_L02_every_method_on_the_good_store(good_store, work, record_property):
    runs = _label_all(good_store, "good_all", work)
    observed = []
    for method, (run, out) in runs.items():
        if run.code != 0:  # sdd-refined needs identities of >= 10 samples: 4 here
            assert method == "sdd-refined", str(run)
            assert_clean_error(run, "at least 10 usable samples")
            assert not out.exists()
            observed.append(f"{method}: {error_line(run)}")
            continue
        table = _labelled(run, out)
        assert len(table) == N_GOOD and table.ok.all() and np.isfinite(table.score).all(), method
    record_property("observed", f"{len(runs) - len(observed)} methods label {N_GOOD}/{N_GOOD}; " + "; ".join(observed))


def test_L03_a_singleton_identity(small_stores, work, record_property):
    runs = _label_all(small_stores["lab_single"], "single", work)
    observed = []
    for method, (run, out) in runs.items():
        if run.code != 0:
            assert_clean_error(run, "usable samples")
            observed.append(f"{method} exit 1")
            continue
        table = _labelled(run, out)
        lonely = table.columns["identity"] == "Lonely_One"
        assert len(table) == 13 and table.ok[~lonely].all(), method
        if not table.ok[lonely].all():  # identity-based methods: the singleton keeps its row and says why
            assert table.status[lonely][0] == "singleton" and "Lonely_One" in table.reason[lonely][0], method
        observed.append(f"{method} {int(table.ok.sum())}/13")
    record_property("observed", ", ".join(observed))
    assert sum("exit 1" in text for text in observed) <= 1


def test_L04_all_singletons(small_stores, work, record_property):
    runs = _label_all(small_stores["lab_allsingle"], "allsingle", work)
    observed = []
    for method, (run, out) in runs.items():
        if run.code == 0:
            assert len(_labelled(run, out)) == 6
            observed.append(f"{method} 6/6")
        else:
            assert_clean_error(run, "at least")
            assert not out.exists()
    failed = [m for m, (run, _) in runs.items() if run.code != 0]
    record_property("observed", f"{', '.join(observed)}; exit 1 with a message: {', '.join(failed)}")
    assert {"norm", "random"} <= {m for m, (run, _) in runs.items() if run.code == 0}


@pytest.fixture(scope="module")
def nan_store(good_store, work) -> Path:
    store = _copy_store(good_store, work, "st_nan")

    def rows(vectors):
        vectors[[0, 7, 20]] = np.nan

    _edit_vectors(store, rows)
    return store


def test_L05_nan_vectors_in_ok_rows(nan_store, work, record_property):
    runs = _label_all(nan_store, "st_nan", work)
    done = []
    for method, (run, out) in runs.items():
        if run.code != 0:
            assert_clean_error(run)
            assert method == "sdd-refined", str(run)
            continue
        table = _labelled(run, out)
        bad = np.zeros(N_GOOD, bool)
        bad[[0, 7, 20]] = True
        assert (table.status[bad] == "invalid_vector").all() and table.ok[~bad].all(), method
        done.append(method)
    record_property("observed", f"{len(done)} methods: {N_GOOD - 3} of {N_GOOD} labelled, 3 invalid_vector")


def test_L06_every_vector_nan(good_store, work, record_property):
    store = _copy_store(good_store, work, "st_nanall")

    def everything(vectors):
        vectors[:] = np.nan

    _edit_vectors(store, everything)
    record_property("observed", _failed_cleanly(_label_all(store, "st_nanall", work)))


def test_L07_inf_scaled_and_zero_vectors(good_store, work, record_property):
    store = _copy_store(good_store, work, "st_inf")

    def damage(vectors):
        vectors[1, 5] = np.inf
        vectors[2] *= 3
        vectors[3] = 0

    _edit_vectors(store, damage)
    observed = []
    for method, (run, out) in _label_all(store, "st_inf", work).items():
        assert run.traceback is None, str(run)
        if run.code != 0:
            assert_clean_error(run)
            observed.append(f"{method}: exit 1")
        else:  # labelled: the damaged rows must not pass as ok
            table = _labelled(run, out)
            assert not table.ok[[1, 2, 3]].any(), (method, table.status[:4])
            observed.append(f"{method}: rows 1-3 {sorted(set(table.status[[1, 2, 3]]))}")
    record_property("observed", "; ".join(observed))


def test_L08_truncated_vectors(good_store, work, record_property):
    store = _copy_store(good_store, work, "st_trunc")
    _truncate(store / "vectors.npy")
    record_property("observed", _failed_cleanly(_label_all(store, "st_trunc", work), str(store), "cannot be read"))


def test_L09_rows_dropped(good_store, work, record_property):
    store = _copy_store(good_store, work, "st_missing")
    _rewrite_samples(store, work, np.r_[0:5, 10:N_GOOD])
    record_property("observed", _failed_cleanly(_label_all(store, "st_missing", work), str(store)))


def test_L10_truncated_sample_table(good_store, work, record_property):
    store = _copy_store(good_store, work, "st_trunc_parquet")
    _truncate(store / "samples.parquet")
    record_property("observed", _failed_cleanly(_label_all(store, "st_trunc_parquet", work),
                                                str(store / "samples.parquet")))


def _verify(store: Path) -> Run:
    return cli("verify", store)


def test_L11_rows_dropped_and_duplicated(good_store, work, record_property):
    store = _copy_store(good_store, work, "st_dup")
    _rewrite_samples(store, work, np.r_[0:5, 10:15, 15:20, 15:N_GOOD])  # 5-9 gone, 15-19 twice: 24 rows
    message = _failed_cleanly(_label_all(store, "st_dup", work), "samples.parquet")
    assert_clean_error(_verify(store), "samples.parquet")
    record_property("observed", message + "; verify too")


def test_L12_rows_permuted(good_store, work, record_property):
    store = _copy_store(good_store, work, "st_shuf")
    _rewrite_samples(store, work, np.random.default_rng(12).permutation(N_GOOD))
    message = _failed_cleanly(_label_all(store, "st_shuf", work), "samples.parquet")
    assert_clean_error(_verify(store), "samples.parquet")
    record_property("observed", message + "; verify too")


def test_L13_bad_method_and_parameters(good_store, work, record_property):
    observed = []
    for extra, needles in ((["-m", "nope"], ("nope", "norm")), (["-m", "sdd", "-p", "n_repeats=abc"], ("n_repeats",)),
                           (["-m", "sdd", "-p", "bogus=1"], ("bogus",)),
                           (["-m", "sdd", "-p", "n_positives=0"], ("n_positives",))):
        out = work / "labels" / "l13.parquet"
        run = cli("label", good_store, *extra, "--out", out)
        assert_clean_error(run, *needles)
        assert not out.exists()
        observed.append(error_line(run))
    record_property("observed", " | ".join(observed))


def test_L14_verify_with_nan_vectors(nan_store, record_property):
    run = _verify(nan_store)
    assert_ok(run)
    record_property("observed", summary(run))
    assert "ROC AUC" in run.output or "roc" in run.output.lower()


def test_L15_evaluate_with_nan_vectors(nan_store, work, record_property):
    labels = work / "labels" / "st_nan_sdd.parquet"
    if not labels.exists():
        assert_ok(cli("label", nan_store, "-m", "sdd", "--out", labels))
    out = work / "reports" / "st_nan"
    run = cli("evaluate", nan_store, "--scores", labels, "--out", out, "--n-bootstrap", "0")
    record_property("observed", f"exit {run.code}: {error_line(run) if run.code else summary(run)}")
    if run.code != 0:
        assert_clean_error(run)
    else:
        assert_ok(run)
        assert (out / "report.html").is_file() and (out / "edc.csv").is_file()


def test_L16_verify_things_that_are_not_stores(good_dir, good_store, small_stores, work, record_property):
    truncated = work / "out" / "l16_trunc"
    if not truncated.exists():
        shutil.copytree(good_store, truncated, ignore=shutil.ignore_patterns("features"))
        _truncate(truncated / "vectors.npy")
    interrupted = work / "out" / "l16_interrupted"
    (work / "out" / "l16_interrupted.partial").mkdir(parents=True, exist_ok=True)
    (work / "out" / "l16_interrupted.partial" / "plan.json").write_text("{}\n", encoding="utf-8")
    image = next(good_dir.rglob("*.jpg"))
    targets = [image, work / "out" / "does_not_exist", good_dir, small_stores["lab_allsingle"], truncated,
               interrupted, work / "out" / "l16_interrupted.partial"]
    observed = []
    for target in targets:
        run = _verify(target)
        assert_clean_error(run, str(target))
        observed.append(error_line(run))
    record_property("observed", " | ".join(observed))
