"""Per-group breakdown (hand-computed pAUCs, error rates, reject rates and FNMR after rejection), where groups come
from (store columns, table columns, side files), and the per-group rows of the report."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from fiqa.core.errors import DataSourceError, InvalidParameterError
from fiqa.core.types import EmbeddingStore, QualityTable, SampleTable
from fiqa.evaluate.groups import MAX_GROUPS, group_breakdown, group_labels, read_groups_file
from fiqa.evaluate.pairs import Comparisons
from fiqa.evaluate.report import write_report
from fiqa.evaluate.run import evaluate_quality
from report_tools import body_rows, fmt, header_rows, read_page, with_interval


def quality_table(sample_id, score, method, **columns):
    score = np.asarray(score, dtype=np.float64)
    status = np.where(np.isnan(score), "not_labelled", "ok").astype(object)
    return QualityTable(np.asarray(sample_id, dtype=np.int64), score, status, np.full(len(score), "", object),
                        {k: np.asarray(v, dtype=object) for k, v in columns.items()}, {"method": method})


def toy_store(root: Path, locations, identities, recipes=None) -> EmbeddingStore:
    n = len(locations)
    vectors = np.random.default_rng(0).normal(size=(n, 4)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    samples = SampleTable(np.arange(n, dtype=np.int64), np.asarray(locations, dtype=object),
                          np.asarray(identities, dtype=object), "list")
    return EmbeddingStore(root, samples, np.full(n, "ok", object), np.full(n, "", object), vectors,
                          np.ones(n, np.float32), np.zeros((n, 5, 2), np.float32), np.ones(n, np.int32),
                          {"backend": {"backend": "toy"}},
                          None if recipes is None else np.full(n, -1, np.int64),
                          None if recipes is None else np.asarray(recipes, dtype=object))


# --- the hand-made case ------------------------------------------------------------------------------------------
#   samples 0-3 in group A (identities a: 0,1; b: 2,3), 4-7 in group B (c: 4,5; d: 6,7); quality q = 1..8
#   mated: (0,1) 0.10 fails, (2,3) 0.90, (4,5) 0.05 fails, (6,7) 0.80
#   non-mated: (0,2) 0.05, (1,3) 0.60, (4,6) 0.00, (5,7) 0.10 inside the groups; (0,4) 0.02 across them
#   FMR 0.2 of 5 non-mated: one may match (0.60), so the threshold lies just above 0.10 (0.10 itself fails)

Q = np.arange(1.0, 9.0)
GROUPS = {0: "A", 1: "A", 2: "A", 3: "A", 4: "B", 5: "B", 6: "B", 7: "B"}


@pytest.fixture(scope="module")
def hand_made():
    a = np.array([0, 2, 4, 6, 0, 1, 4, 5, 0])
    b = np.array([1, 3, 5, 7, 2, 3, 6, 7, 4])
    mated = np.array([True] * 4 + [False] * 5)
    similarity = np.array([0.10, 0.90, 0.05, 0.80, 0.05, 0.60, 0.00, 0.10, 0.02])
    identity = ["a", "a", "b", "b", "c", "c", "d", "d"]
    tables = [quality_table(np.arange(8), Q, "q", identity=identity),
              quality_table(np.arange(8), 9 - Q, "flipped", identity=identity)]
    evaluation = evaluate_quality(Comparisons(a, b, mated, similarity, {}), tables, fmr=0.2, discard_limit=1.0,
                                  n_bootstrap=0, legacy_erc=False, more_fmrs=())
    return evaluation


def test_group_breakdown_by_hand(hand_made):
    evaluation = hand_made
    assert evaluation.edc.threshold == np.nextafter(0.10, 1)
    breakdown = group_breakdown(evaluation, GROUPS, reject_quantile=(0.25, 0.5))
    assert breakdown.groups == ("A", "B") and breakdown.methods == ("q", "flipped", "random")
    assert breakdown.n_mated.tolist() == [2, 2] and breakdown.n_nonmated.tolist() == [2, 2]
    assert breakdown.n_identities.tolist() == [2, 2] and breakdown.n_samples.tolist() == [4, 4]
    assert breakdown.start_fnmr.tolist() == [0.5, 0.5]
    assert breakdown.start_fmr.tolist() == [0.5, 0.0]  # A: (1,3) matches at 0.60; B: none
    q, flipped = 0, 1
    # FNMR-EDC to a discard limit of 1: q discards each group's failed pair first (pair quality 1 in A, 5 in B):
    # 0.5 on [0, 0.5), 0 after: 0.25. flipped discards the good pair first: 0.5, then 1: 0.75
    np.testing.assert_allclose(breakdown.fnmr_pauc[:, q], [0.25, 0.25])
    np.testing.assert_allclose(breakdown.fnmr_pauc[:, flipped], [0.75, 0.75])
    # best (2 pairs, 1 error): 0.5 on [0, 0.5), then 0: 0.25
    np.testing.assert_allclose(breakdown.fnmr_pauc_minus_best[:, q], [0.0, 0.0], atol=1e-15)
    np.testing.assert_allclose(breakdown.fnmr_at_limit[:, q], [0.0, 0.0])
    np.testing.assert_allclose(breakdown.fnmr_at_limit[:, flipped], [1.0, 1.0])
    # FMR-EDC of A: q discards (0,2) (pair quality 1, no error) first: 0.5 then 1 -> 0.75; flipped discards the
    # false match (1,3) (pair quality min(7, 5) = 5 < 6) first: 0.5 then 0 -> 0.25. B has no false match.
    np.testing.assert_allclose(breakdown.fmr_pauc[:, q], [0.75, 0.0])
    np.testing.assert_allclose(breakdown.fmr_pauc[:, flipped], [0.25, 0.0])
    # quantiles of 1..8: 0.25 -> 2.75, 0.5 -> 4.5 (both methods: the same values)
    np.testing.assert_allclose(breakdown.quantile_thresholds[q], [2.75, 4.5])
    # q rejects samples 0,1 (at 2.75) and 0-3 (at 4.5): all in A; flipped rejects 6,7 and 4-7: all in B
    np.testing.assert_allclose(breakdown.reject_rates[:, q], [[0.5, 1.0], [0.0, 0.0]])
    np.testing.assert_allclose(breakdown.reject_rates[:, flipped], [[0.0, 0.0], [0.5, 1.0]])
    # FNMR of the mated pairs kept: q at 2.75 keeps (2,3) in A (0 of 1 fails) and both of B (1 of 2);
    # at 4.5 none of A. flipped at 2.75 keeps both of A (1 of 2) and (4,5) in B (it fails); at 4.5 none of B
    np.testing.assert_allclose(breakdown.fnmr_after_reject[:, q], [[0.0, np.nan], [0.5, 0.5]])
    np.testing.assert_allclose(breakdown.fnmr_after_reject[:, flipped], [[0.5, 0.5], [1.0, np.nan]])
    # the first quantile's views and the table
    assert breakdown.reject_quantile == 0.25
    np.testing.assert_array_equal(breakdown.reject_rate, breakdown.reject_rates[:, :, 0])
    rows = {(r["group"], r["method"]): r for r in breakdown.table()}
    assert rows["A", "q"]["reject_rate_at_0.5"] == 1.0 and rows["B", "flipped"]["fnmr_after_reject_at_0.25"] == 1.0
    assert rows["A", "q"]["reject_threshold"] == 2.75 and np.isnan(rows["A", "q"]["fnmr_after_reject_at_0.5"])
    assert set(breakdown.fnmr_curves) == {"A", "B"} and set(breakdown.fnmr_curves["A"]) == set(breakdown.methods)


def test_group_breakdown_refuses_bad_quantiles(hand_made):
    for bad in (0.0, 1.0, [], [0.1, 1.5]):
        with pytest.raises(InvalidParameterError, match="'reject_quantile'"):
            group_breakdown(hand_made, GROUPS, reject_quantile=bad)


def test_report_writes_group_rows_beside_the_overall_ones(hand_made, tmp_path):
    write_report(hand_made, tmp_path, groups=GROUPS, group_by="g", reject_quantiles=(0.25, 0.5))
    with open(tmp_path / "edc.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["group"] for r in rows] == ["all"] * 3 + ["g=A"] * 3 + ["g=B"] * 3
    by_key = {(r["group"], r["method"]): r for r in rows}
    assert float(by_key["g=A", "q"]["fnmr_pauc"]) == pytest.approx(0.25)
    assert float(by_key["g=B", "flipped"]["fnmr_pauc"]) == pytest.approx(0.75)
    assert float(by_key["g=A", "q"]["fmr_pauc"]) == pytest.approx(0.75)
    assert by_key["all", "q"]["kind"] == "label" and by_key["all", "random"]["kind"] == "baseline"
    with open(tmp_path / "groups.csv", encoding="utf-8") as handle:
        groups = {(r["group"], r["method"]): r for r in csv.DictReader(handle)}
    assert float(groups["A", "q"]["reject_rate_at_0.5"]) == 1.0
    data = json.loads((tmp_path / "edc.json").read_text())
    assert data["groups"]["group_by"] == "g" and data["groups"]["reject_quantiles"] == [0.25, 0.5]
    # the page's two group tables are groups.csv: the groups' counts and start rates, then per method and group
    # the pAUC with its interval and, per quantile, the reject rate and the FNMR kept
    tables = read_page((tmp_path / "report.html").read_text(encoding="utf-8")).tables
    with open(tmp_path / "groups.csv", encoding="utf-8") as handle:
        written = list(csv.DictReader(handle))
    names = list(dict.fromkeys(r["group"] for r in written))
    first = {name: next(r for r in written if r["group"] == name) for name in names}
    counts = [[name, *(fmt(int(first[name][k])) for k in ("n_samples", "n_mated", "n_nonmated", "n_identities")),
               fmt(float(first[name]["start_fnmr"])), fmt(float(first[name]["start_fmr"]))] for name in names]
    group_rows = {(r["group"], r["method"]): r for r in written}

    def cells(row):
        rates = [fmt(float(row[f"{k}_at_{q:g}"])) for q in (0.25, 0.5) for k in ("reject_rate", "fnmr_after_reject")]
        return [with_interval(row["fnmr_pauc"], row["pauc_ci_low"], row["pauc_ci_high"]), *rates]

    methods = list(dict.fromkeys(r["method"] for r in written))
    per_method = [[method, *(cell for name in names for cell in cells(group_rows[name, method]))] for method in methods]
    shown = [(header_rows(t)[0], body_rows(t)) for t in tables if body_rows(t) in (counts, per_method)]
    assert [rows for _, rows in shown] == [counts, per_method]
    assert shown[1][0][1:] == [f"g = {name}" for name in names]  # the grouping's name and its groups head the columns
    for name in ("edc_groups.png", "rejection.png", "groups.csv"):
        assert (tmp_path / name).read_bytes()[:4] in (b"\x89PNG", b"grou"), name
    # the same folder re-used without groups keeps no stale group files
    write_report(hand_made, tmp_path)
    assert not any((tmp_path / name).exists() for name in ("groups.csv", "edc_groups.png", "rejection.png"))
    with open(tmp_path / "edc.csv", encoding="utf-8") as handle:
        assert {r["group"] for r in csv.DictReader(handle)} == {"all"}


# --- where groups come from --------------------------------------------------------------------------------------

def test_group_labels_from_store_and_table_columns(tmp_path):
    recipes = ["", '{"degradations":[{"kind":"motion_blur","seed":1,"severity":0.5}]}', '{"degradations":[]}']
    store = toy_store(tmp_path, ["/d/x/x_0001.jpg", "/d/x/x_0001.jpg", "/d/y/y_0001.jpg"], ["x", "x", "y"],
                      recipes)
    assert group_labels("identity", store=store) == {0: "x", 1: "x", 2: "y"}
    assert group_labels("file", store=store) == {0: "x_0001.jpg", 1: "x_0001.jpg", 2: "y_0001.jpg"}
    assert group_labels("degradation", store=store) == {0: "original", 1: "motion_blur", 2: "none"}
    table = quality_table([0, 1, 2], [1.0, 2.0, 3.0], "q", pose=["frontal", "", "profile"])
    assert group_labels("pose", store=store, tables=[table]) == {0: "frontal", 2: "profile"}
    with pytest.raises(InvalidParameterError, match="'column'.*'pose'.*'nothing'"):
        group_labels("nothing", store=store, tables=[table])
    many = quality_table(np.arange(MAX_GROUPS + 1), np.ones(MAX_GROUPS + 1), "q",
                         value=[str(i) for i in range(MAX_GROUPS + 1)])
    with pytest.raises(InvalidParameterError, match="at most 50 distinct"):
        group_labels("value", tables=[many])


def test_groups_from_side_files(tmp_path):
    store = toy_store(tmp_path, ["/d/Ann/Ann_0001.jpg", "/d/Bob/Bob_0001.jpg", "/d/Cy/Cy_0001.jpg",
                                 "/d/Dee/Dee_0001.jpg"], ["Ann", "Bob", "Cy", "Dee"])
    lists = tmp_path / "gender"
    lists.mkdir()
    (lists / "female_names.txt").write_text("Ann_0001.jpg\nCy_0001.jpg\nZed_0001.jpg\n")
    (lists / "male_names.txt").write_text("Bob_0001.jpg\nCy_0001.jpg\n")  # Cy in both lists: unlabelled
    assert read_groups_file(lists, store) == {0: "female", 1: "male"}
    assert group_labels("gender", store=store, groups_file=lists) == {0: "female", 1: "male"}
    by_file = tmp_path / "age.csv"
    by_file.write_text("file,age\nDee_0001.jpg,old\nAnn_0001.jpg,young\n")
    assert read_groups_file(by_file, store, column="age") == {0: "young", 3: "old"}
    by_id = tmp_path / "ids.csv"
    by_id.write_text("sample_id,group\n2,x\n9,y\n")
    assert read_groups_file(by_id, store) == {2: "x"}
    by_location = tmp_path / "loc.csv"
    by_location.write_text("location,site\n/d/Bob/Bob_0001.jpg,north\n")
    assert read_groups_file(by_location, store, column="site") == {1: "north"}
    bad = tmp_path / "bad.csv"
    bad.write_text("name,a,b\nx,1,2\n")
    with pytest.raises(DataSourceError, match="key column"):
        read_groups_file(bad, store)
    nobody = tmp_path / "nobody.csv"
    nobody.write_text("file,group\nNo_0001.jpg,z\n")
    with pytest.raises(DataSourceError, match="labels none of the 4 samples"):
        read_groups_file(nobody, store)
    with pytest.raises(DataSourceError, match="does not exist"):
        read_groups_file(tmp_path / "missing.csv", store)
