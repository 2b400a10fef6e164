"""The end-to-end demo on a small real LFW-dev subset (runs in CI)."""
from __future__ import annotations

import csv
import hashlib
import html
import json
import math
from collections import Counter
from decimal import Decimal, localcontext
from fractions import Fraction

import numpy as np
import pytest
from click.testing import CliRunner

from fiqa.cli import main
from fiqa.core.errors import DataSourceError, InvalidParameterError
from fiqa.demo import TITLES, locate_lfw, run_demo
from fiqa.evaluate import sample_comparisons
from fiqa.evaluate.run import RANDOM_METHOD
from fiqa.io.table import load_quality
from fiqa.store import open_store
from report_tools import body_rows, read_page, with_interval
from tolerances import U64, assert_within, gamma


@pytest.fixture(scope="module")
def demo_run(lfw_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    result = run_demo(lfw_dir, out, min_images=10, max_identities=12, max_images_per_identity=12, epochs=2,
                      n_nonmated=20_000, random_state=1, progress=False)
    return out, result


SETS = {"natural": ("store", "report", "test"), "degraded": ("test-degraded", "report-degraded", "test-degraded")}
"""Each test set's store folder, report folder and table-file suffix under the demo's output."""


def _set_tables(out, suffix, methods):
    """Every evaluated method's table of one set, by method name, read from the demo's own files."""
    tables = {}
    for path in [*(out / "labels").glob(f"*.{suffix}.parquet"), *(out / "scores").glob(f"*.{suffix}.parquet")]:
        if path.name.split(".")[-2] == suffix:  # "x.test.parquet" must not pick up "x.test-degraded.parquet"
            table = load_quality(path)
            tables[table.method] = table
    assert set(tables) == set(methods) - {RANDOM_METHOD}
    return tables


def test_demo_reports_every_method_on_held_apart_identities(demo_run):
    out, result = demo_run
    expected = {"sdd", "sdd-refined", "cr", "reference-consensus", "mean-positive", "norm", "random",
                "model:plain head", "model:default", "ser-fiq", "flip-consistency"}
    for set_name in ("natural", "degraded"):
        assert {row["method"] for row in result.summary if row["set"] == set_name} == expected
    params = json.loads((out / "demo.json").read_text())["params"]
    assert params["training_free"] == ["ser-fiq", "flip-consistency", "norm"]
    assert json.loads((out / "summary.json").read_text())["rows"] == result.summary  # the file is what was returned
    split = json.loads((out / "split.json").read_text())
    store = open_store(out / "store")
    identity = store.samples.identity.astype(str)
    rows_of = {"natural": np.isin(identity, split["test"]) & store.ok, "train": np.isin(identity, split["train"])
               & store.ok}
    for set_name, (store_dir, report_dir, suffix) in SETS.items():
        set_store = open_store(out / store_dir)
        evaluated = set_store.samples.sample_id[rows_of.get(set_name, set_store.ok)]
        rows = [row for row in result.summary if row["set"] == set_name]
        tables = _set_tables(out, suffix, [row["method"] for row in rows])
        for row in rows:
            table = tables.get(row["method"])
            # every table scores exactly the set's evaluated images: the held-apart half, never a training face
            if table is not None:
                np.testing.assert_array_equal(np.sort(table.sample_id), evaluated)
            # the summary's cost per image is the one its table recorded when it was made; labels record none
            recorded = None if table is None else table.meta.record.get("seconds_per_image")
            assert row["seconds_per_image"] == recorded, row["method"]
            timed = row["method"].startswith("model:") or row["method"] in params["training_free"]
            assert (recorded is not None) == timed, row["method"]
            if row["method"] in params["training_free"]:
                assert table.meta.record["n_images_timed"] == len(evaluated)
        # the report of the set is the summary's: same methods in the same order with the same pAUCs
        page = (out / report_dir / "report.html").read_text(encoding="utf-8")
        table_rows = body_rows(read_page(page).tables[0])
        assert [r[:2] for r in table_rows] == [[str(rank), row["method"]] for rank, row in enumerate(rows, 1)]
        assert [r[3] for r in table_rows] == [with_interval(row["fnmr_pauc"], row["pauc_ci_low"],
                                                            row["pauc_ci_high"]) for row in rows]
        # it names the held-apart identities of split.json (their digest), for the set it was made for
        described = json.loads((out / report_dir / "edc.json").read_text())["meta"]["identity_filter"]
        digest = hashlib.sha256(json.dumps([split["train"], split["test"]]).encode()).hexdigest()
        assert (described["sha256"], described["n_test_identities"], described["set"]) == (
            digest, len(split["test"]), set_name)
    assert set(identity[rows_of["natural"]]) == set(split["test"])
    serfiq = load_quality(out / "scores" / "ser-fiq.test.parquet")
    assert (serfiq.meta["params"]["n_samples"], serfiq.meta["params"]["random_state"]) == (
        params["serfiq_samples"], params["random_state"])
    # the degraded set: copies of the held-apart faces only, each natural test face copied
    degraded = open_store(out / "test-degraded")
    np.testing.assert_array_equal(np.unique(degraded.parent_id), store.samples.sample_id[rows_of["natural"]])
    # the degraded report's groups are the capture effects its store records, with their sample counts
    kinds = Counter("+".join(d["kind"] for d in json.loads(recipe)["degradations"]) or "none"
                    for recipe in degraded.recipe[degraded.ok])
    with open(out / "report-degraded" / "groups.csv", encoding="utf-8") as handle:
        counted = {(row["group"], int(row["n_samples"])) for row in csv.DictReader(handle)}
    assert counted == set(kinds.items())
    with open(out / "report-degraded" / "edc.csv", encoding="utf-8") as handle:
        groups = {row["group"] for row in csv.DictReader(handle)}
    assert groups == {"all"} | {f"degradation={kind}" for kind in kinds}
    # the plain head trained on the training half's labels; the default recipe on those faces plus, for each,
    # its augmented copies (each parent a training face, the same number of copies of each)
    plain = load_quality(out / "models" / "plain-head" / "labels.parquet")
    np.testing.assert_array_equal(np.sort(plain.sample_id), store.samples.sample_id[rows_of["train"]])
    augmented = open_store(out / "models" / "default" / "augmented")
    trained_on = load_quality(out / "models" / "default" / "labels.parquet")
    position = np.searchsorted(augmented.samples.sample_id, trained_on.sample_id)
    copies = augmented.meta.augmentation["copies"]
    derived = augmented.derived[position]
    np.testing.assert_array_equal(np.sort(trained_on.sample_id[~derived]), np.sort(plain.sample_id))
    parents, per_parent = np.unique(augmented.parent_id[position[derived]], return_counts=True)
    np.testing.assert_array_equal(parents, np.sort(plain.sample_id))
    assert set(per_parent) == {copies}
    for name in ("plain-head", "default"):
        assert (out / "models" / name / "model" / "model.onnx").is_file()
    summary = {(row["set"], row["method"]): row for row in result.summary}
    assert summary[("natural", "sdd")]["spearman_with_test_labels"] is None  # only models get one


# --- the demo's numbers recomputed from the files it wrote, with plain implementations ---------------------------

def _plain_fnmr_steps(similarity, pair_quality, threshold):
    """(discarded, errors) at each distinct pair-quality level, lowest level first: the comparisons below the level
    are discarded (a missing quality lowest of all), errors are the kept ones below the threshold."""
    quality = [-math.inf if math.isnan(q) else q for q in pair_quality]
    steps = []
    for level in sorted(set(quality)):
        kept = [s for s, q in zip(similarity, quality) if q >= level]
        steps.append((len(quality) - len(kept), sum(s < threshold for s in kept)))
    return steps


def _pair_quality(quality_a, quality_b):
    """The lower of the two qualities; missing (NaN) when either is."""
    return math.nan if math.isnan(quality_a) or math.isnan(quality_b) else min(quality_a, quality_b)


def _exact_pauc(steps, n, limit):
    """The stepwise area under those steps from 0 to ``limit`` in exact rationals (``limit`` the float itself)."""
    limit = Fraction(limit)
    area = Fraction(0)
    for i, (discarded, errors) in enumerate(steps):
        end = Fraction(steps[i + 1][0], n) if i + 1 < len(steps) else Fraction(1)
        area += Fraction(errors, n - discarded) * (min(end, limit) - min(Fraction(discarded, n), limit))
    return area


def _pauc_bound(n_steps, limit):
    """How far the library's float64 pAUC can be from the exact one: each step's two fractions (one division
    each) and the width between them (a subtraction) are within 2 u limit + u width, the rate (one division,
    <= 1) and the product add u width each, so the terms are within 2 u limit + 3 u width; their sum (a dot
    product of n_steps terms, |terms| summing to at most limit) adds gamma_n limit. In all,
    limit ((2 n + 3) u + gamma_n)."""
    return limit * ((2 * n_steps + 3) * U64 + gamma(n_steps, U64))


def _exact_spearman(a, b):
    """Spearman's rho of two paired samples in exact arithmetic (average ranks of ties; 50 significant digits
    for the one square root)."""
    def ranks(values):
        order = sorted(range(len(values)), key=lambda i: values[i])
        rank = [Fraction(0)] * len(values)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
                j += 1
            for k in range(i, j + 1):
                rank[order[k]] = Fraction(i + j + 2, 2)  # the tie group's mean 1-based rank
            i = j + 1
        return rank
    x, y = ranks(a), ranks(b)
    mean = Fraction(len(x) + 1, 2)
    num = sum((p - mean) * (q - mean) for p, q in zip(x, y))
    den = sum((p - mean) ** 2 for p in x) * sum((q - mean) ** 2 for q in y)
    with localcontext() as context:
        context.prec = 50
        return float(Decimal(num.numerator) / Decimal(num.denominator)
                     / (Decimal(den.numerator) / Decimal(den.denominator)).sqrt())


def _plain_cosine(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def test_demo_edc_and_spearman_recomputed_from_its_own_files(demo_run):
    """For each test set: the comparisons drawn again with the demo's settings, their similarities recomputed from
    the stored vectors, the threshold picked again, and every method's FNMR-EDC and pAUC recomputed with a plain
    loop from the quality tables the demo wrote; they must match the report's and the summary's numbers."""
    out, result = demo_run
    params = json.loads((out / "demo.json").read_text())["params"]
    split = json.loads((out / "split.json").read_text())
    for set_name, (store_dir, report_dir, suffix) in SETS.items():
        set_store = open_store(out / store_dir)
        mask = set_store.ok & (np.isin(set_store.samples.identity.astype(str), split["test"]))
        comparisons = sample_comparisons(set_store, n_nonmated=params["n_nonmated"], sample_mask=mask,
                                         random_state=params["random_state"],
                                         max_mated_per_identity=params["max_mated_per_identity"])
        report = json.loads((out / report_dir / "edc.json").read_text())["summary"]
        assert (comparisons.n_mated, len(comparisons.similarity) - comparisons.n_mated) == (
            report["n_mated"], report["n_nonmated"])
        # every comparison is of two evaluated images; mated exactly when the two are the same person
        identity = set_store.samples.identity.astype(str)
        row_of = {int(sample): row for row, sample in enumerate(set_store.samples.sample_id)}
        a = np.array([row_of[int(s)] for s in comparisons.sample_a])
        b = np.array([row_of[int(s)] for s in comparisons.sample_b])
        assert mask[a].all() and mask[b].all() and np.array_equal(identity[a] == identity[b], comparisons.mated)
        # the demo asked for more non-mated pairs than these few people have: all of them are used
        rows = np.flatnonzero(mask)
        every_nonmated = {(i, j) for i in rows for j in rows if i < j and identity[i] != identity[j]}
        assert len(every_nonmated) <= params["n_nonmated"]
        assert {(min(i, j), max(i, j)) for i, j, m in zip(a, b, comparisons.mated) if not m} == every_nonmated
        # cosine similarities from the stored vectors: two float64 computations of a d-term dot product and two
        # d-term norms each (within gamma_d of their magnitude, then a square root, a product and a division:
        # 2 gamma_d + 4 u of the unit-free cosine per path), compared with each other
        vectors = np.asarray(set_store.vectors, np.float64)
        plain = [_plain_cosine(vectors[i].tolist(), vectors[j].tolist()) for i, j in zip(a, b)]
        dim = vectors.shape[1]
        assert_within(comparisons.similarity, plain, 2 * (2 * gamma(dim, U64) + 4 * U64), "cosine similarities")
        # the threshold: just above the (k + 1)-th highest non-mated similarity, k = floor(fmr m) may match
        nonmated = sorted(comparisons.similarity[~comparisons.mated].tolist(), reverse=True)
        allowed = math.floor(Fraction(report["fmr"]) * len(nonmated))
        threshold = float(np.nextafter(nonmated[allowed], np.inf))
        assert threshold == report["threshold"]  # a selection and one nextafter of the same floats: exact
        mated_similarity = comparisons.similarity[comparisons.mated].tolist()
        n_mated = len(mated_similarity)
        with open(out / report_dir / "edc_curves.csv", encoding="utf-8") as handle:
            written = [r for r in csv.DictReader(handle) if r["group"] == "all" and r["error_type"] == "fnmr"
                       and float(r["fmr_target"]) == report["fmr"]]
        summary = {row["method"]: row for row in result.summary if row["set"] == set_name}
        tables = _set_tables(out, suffix, summary)
        for method, table in tables.items():
            quality = dict(zip(table.sample_id.tolist(), table.score.tolist()))
            pair_quality = [_pair_quality(quality.get(int(x), math.nan), quality.get(int(y), math.nan))
                            for x, y, m in zip(comparisons.sample_a, comparisons.sample_b, comparisons.mated) if m]
            steps = _plain_fnmr_steps(mated_similarity, pair_quality, threshold)
            # the written curve points are these steps (integer counts: exact), as far as the file goes
            points = [(int(r["discard_count"]), int(r["error_count"])) for r in written if r["method"] == method]
            assert points and points == steps[:len(points)], method
            assert points[-1][0] / n_mated > report["discard_limit"] or len(points) == len(steps), method
            exact = _exact_pauc(steps, n_mated, report["discard_limit"])
            inside = sum(discarded / n_mated < report["discard_limit"] for discarded, _ in steps)
            assert_within(summary[method]["fnmr_pauc"], float(exact), _pauc_bound(inside, report["discard_limit"]),
                          f"{set_name} {method} pAUC")
        # each model's Spearman with the set's reference-consensus labels, over the images both rate
        reference = tables["reference-consensus"]
        for method in ("model:plain head", "model:default"):
            scores = tables[method]
            labels = dict(zip(reference.sample_id.tolist(), reference.score.tolist()))
            pairs = [(s, labels[i]) for i, s in zip(scores.sample_id.tolist(), scores.score.tolist())
                     if i in labels and math.isfinite(s) and math.isfinite(labels[i])]
            # scipy: ranks (exact half-integers), their means (one division each), two centred n-term dot products
            # and two n-term sums of squares (each within gamma_n of its Cauchy-Schwarz magnitude), one square
            # root, a product and a division: |error| <= 2 gamma_n + 12 u to first order
            n = len(pairs)
            assert_within(summary[method]["spearman_with_test_labels"], _exact_spearman(*zip(*pairs)),
                          2 * gamma(n, U64) + 12 * U64, f"{set_name} {method} Spearman")


def test_demo_rerun_reuses_finished_stages(demo_run, lfw_dir):
    out, first = demo_run
    before = {p: p.stat().st_mtime_ns for p in (out / "labels").glob("*.parquet")}
    again = run_demo(lfw_dir, out, min_images=10, max_identities=12, max_images_per_identity=12, epochs=2,
                     n_nonmated=20_000, random_state=1, progress=False)
    assert {p: p.stat().st_mtime_ns for p in (out / "labels").glob("*.parquet")} == before
    assert [r["method"] for r in again.summary] == [r["method"] for r in first.summary]
    np.testing.assert_allclose([r["fnmr_pauc"] for r in again.summary], [r["fnmr_pauc"] for r in first.summary])


def test_missing_lfw_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("FIQA_LFW", str(tmp_path / "nowhere"))
    with pytest.raises(DataSourceError, match="nowhere: LFW folder does not exist"):
        locate_lfw(tmp_path / "nowhere")
    result = CliRunner().invoke(main, ["demo", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "LFW folder does not exist" in result.output
    with pytest.raises(DataSourceError, match=r"nowhere \(from FIQA_LFW\): LFW folder does not exist"):
        locate_lfw()
    monkeypatch.delenv("FIQA_LFW")  # the package assumes no location: no folder given is an error, not a guess
    with pytest.raises(DataSourceError, match="no LFW folder given: pass one .* or set FIQA_LFW"):
        locate_lfw()


def test_demo_reports_have_their_own_titles_and_paired_differences(demo_run):
    out, result = demo_run
    for set_name, page in (("natural", result.report), ("degraded", result.degraded_report)):
        title = page.read_text(encoding="utf-8").split("<title>")[1].split("</title>")[0]
        assert html.unescape(title) == TITLES[set_name]
    paired = json.loads((out / "summary.json").read_text())["paired"]
    pauc = {(row["set"], row["method"]): row["fnmr_pauc"] for row in result.summary}
    for set_name, (_, report_dir, _) in SETS.items():
        rows = [row for row in paired if row["set"] == set_name and row["fmr_target"] == 1e-3]
        assert [(r["method"], r["versus"]) for r in rows[:3]] == [("model:plain head", "norm"),
                                                                  ("model:plain head", "flip-consistency"),
                                                                  ("model:plain head", "ser-fiq")]
        assert {r["method"] for r in rows} == {"model:plain head", "model:default"}
        # each difference is the two summary pAUCs subtracted (the same floats, one subtraction: exact)
        assert [r["pauc_difference"] for r in rows] == [pauc[set_name, r["method"]] - pauc[set_name, r["versus"]]
                                                        for r in rows]
        with open(out / report_dir / "paired.csv", encoding="utf-8") as handle:
            written = [(r["method"], r["versus"], float(r["pauc_difference"]), float(r["ci_low"]),
                        float(r["ci_high"]), r["verdict"]) for r in csv.DictReader(handle)]
        assert written == [(r["method"], r["versus"], r["pauc_difference"], r["ci_low"], r["ci_high"], r["verdict"])
                           for r in paired if r["set"] == set_name]
    with open(out / "report" / "edc.csv", encoding="utf-8") as handle:
        kinds = {row["method"]: row["kind"] for row in csv.DictReader(handle)}
    assert kinds["mean-positive"] == "label" and kinds["ser-fiq"] == "baseline"


def test_a_name_listed_as_label_and_as_training_free_method_is_refused(tmp_path):
    # one name is one method: norm given as a baseline and as a training-free method is refused before any work
    with pytest.raises(InvalidParameterError, match=r"'training_free'.*\['norm'\]"):
        run_demo(tmp_path / "no-lfw", tmp_path / "out", baselines=("mean-positive", "norm"),
                 training_free=("ser-fiq", "norm"))
    assert not (tmp_path / "out").exists()
