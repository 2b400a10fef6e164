"""fiqa.curate: strata cut by rank inside each group, every cluster represented, bursts visited once, the flywheel."""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from fiqa.cli import main as cli_main
from fiqa.core.errors import InvalidParameterError
from fiqa.core.types import QualityTable, Status
from fiqa.curate import curate, flywheel
from fiqa.io.table import read_table, save_quality


def _table(score, identity, **columns) -> QualityTable:
    n = len(score)
    score = np.asarray(score, np.float64)
    status = np.where(np.isfinite(score), Status.OK.value, Status.SINGLETON.value).astype(object)
    reason = np.where(np.isfinite(score), "", "only sample").astype(object)
    cols = {"identity": np.asarray(identity, dtype=object),
            "location": np.array([f"img{i}.jpg" for i in range(n)], dtype=object),
            **{k: np.asarray(v) for k, v in columns.items()}}
    return QualityTable(np.arange(100, 100 + n, dtype=np.int64), score, status, reason, cols, {"method": "toy"})


def _two_identities() -> QualityTable:
    # identity a: two sessions (cluster_1 = 0 / 1) of 6 samples; identity b: one session of 6; one singleton c
    score = [*range(6), *range(10, 16), *range(20, 26), np.nan]
    identity = ["a"] * 12 + ["b"] * 6 + ["c"]
    cluster = [0] * 6 + [1] * 6 + [0] * 6 + [0]
    return _table(score, identity, cluster_1=np.array(cluster), burst=np.arange(19))


def test_strata_are_rank_terciles_inside_each_group_and_every_group_is_represented():
    table = _two_identities()
    result = curate(table, per_stratum=1, random_state=0)
    # each group of 6: the 2 best are high, the next 2 middle, the 2 worst low (hand-checked)
    expected = np.array(["low", "low", "middle", "middle", "high", "high"] * 3 + [""], dtype=object)
    np.testing.assert_array_equal(result.stratum, expected)
    assert set(result.cluster[:18]) == {"a/0", "a/1", "b/0"}
    # one kept per (group, stratum): 3 groups x 3 strata
    assert result.kept.sum() == 9
    for group in ("a/0", "a/1", "b/0"):
        for band in ("high", "middle", "low"):
            assert (result.kept & (result.cluster == group) & (result.stratum == band)).sum() == 1
    assert not result.kept[18] and result.reason[18].startswith("not a candidate: status singleton")
    assert result.report["per_stratum"] == {band: {"candidates": 6, "kept": 3} for band in ("high", "middle", "low")}
    assert result.report["per_level"]["cluster_1"] == {"clusters": 3, "represented": 3}
    assert result.report["per_level"]["identity"] == {"clusters": 2, "represented": 2}


def test_proportions_with_more_per_stratum_and_grouping_by_identity_only():
    table = _two_identities()
    result = curate(table, cluster_column=None, n_strata=2, per_stratum=2, random_state=1)
    # identity a has 12 samples: 6 high, 6 low; 2 kept from each band; identity b: 3 + 3, 2 kept from each
    assert result.report["per_stratum"] == {"high": {"candidates": 9, "kept": 4}, "low": {"candidates": 9, "kept": 4}}
    top_of_a = np.argsort(-table.score[:12])[:6]
    assert set(np.flatnonzero(result.stratum[:12] == "high")) == set(top_of_a)


def test_bursts_give_one_sample_before_any_gives_a_second():
    # one group of 9 in one stratum; a burst of 6 near-duplicates and 3 singleton bursts; keep 4
    table = _table(np.linspace(0, 1, 9), ["a"] * 9, burst=np.array([0, 0, 0, 0, 0, 0, 1, 2, 3]))
    for random_state in range(5):
        result = curate(table, cluster_column=None, n_strata=1, per_stratum=4, random_state=random_state)
        kept_bursts = table.columns["burst"][result.kept]
        assert sorted(kept_bursts) == [0, 1, 2, 3]


def test_attributes_split_groups_and_are_reported():
    table = _two_identities()
    pose = np.array((["frontal", "profile"] * 10)[:19], dtype=object)
    result = curate(table, cluster_column=None, n_strata=1, attributes={"pose": pose})
    assert result.report["n_groups"] == 4  # (a, b) x (frontal, profile)
    assert result.report["per_attribute"]["pose"] == {"frontal": {"candidates": 9, "kept": 2},
                                                     "profile": {"candidates": 9, "kept": 2}}
    with pytest.raises(InvalidParameterError, match="'attributes' parameter of curate"):
        curate(table, attributes={"pose": pose[:3]})


def test_deterministic_per_seed_and_seed_matters():
    table = _table(np.random.default_rng(0).random(60), np.repeat(["a", "b"], 30), burst=np.arange(60))
    first = curate(table, n_strata=3, per_stratum=2, random_state=7)
    again = curate(table, n_strata=3, per_stratum=2, random_state=7)
    np.testing.assert_array_equal(first.kept, again.kept)
    others = [curate(table, n_strata=3, per_stratum=2, random_state=s).kept for s in range(1, 6)]
    assert any((other != first.kept).any() for other in others)


@pytest.mark.parametrize(("params", "name"), [({"n_strata": 0}, "n_strata"), ({"per_stratum": 0}, "per_stratum"),
                                              ({"cluster_column": "cluster_9"}, "cluster_column")])
def test_bad_parameters_are_named(params, name):
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter of curate"):
        curate(_two_identities(), **params)


def test_flywheel_trains_on_the_kept_rows_and_rescores_everything():
    table = _two_identities()
    seen = []

    def retrain(seed_labels, round_index):
        seen.append(set(seed_labels.sample_id.tolist()))
        # a "model" that scores sample s as -s (reverses the order) and cannot score the last sample
        ids = table.sample_id[:-1]
        return QualityTable(ids, -ids.astype(float), np.full(len(ids), "ok", object), np.full(len(ids), "", object))

    history = flywheel(table, retrain, rounds=2, per_stratum=1, random_state=0)
    assert len(history) == 2 and len(seen[0]) == 9
    assert seen[0] == set(table.sample_id[history[0].curation.kept])
    quality = history[0].quality
    np.testing.assert_array_equal(quality.score[:-1], -table.sample_id[:-1])
    assert quality.status[-1] == Status.NOT_LABELLED.value and "cluster_1" in quality.columns
    # round 2 cuts its strata on the new quality: the former worst of each group is now high
    assert history[1].curation.stratum[0] == "high" and history[1].curation.stratum[5] == "low"


def test_cli_writes_the_list_and_reports(tmp_path):
    labels = save_quality(_two_identities(), tmp_path / "labels.parquet")
    attributes = tmp_path / "attributes.csv"
    attributes.write_text("sample_id,light\n" + "\n".join(f"{100 + i},{'dark' if i < 6 else 'day'}"
                                                          for i in range(19)) + "\n", encoding="utf-8")
    out = tmp_path / "curated.parquet"
    result = CliRunner().invoke(cli_main, ["curate", str(labels), "--out", str(out), "--attributes",
                                           str(attributes), "--random-state", "3"])
    assert result.exit_code == 0, result.output
    columns, meta = read_table(out)
    assert list(columns)[:7] == ["sample_id", "location", "identity", "cluster", "stratum", "quality", "kept"]
    assert int(columns["kept"].sum()) == 9 and meta["params"]["random_state"] == 3
    assert (tmp_path / "curated.report.md").read_text().startswith("# Curation report")
    assert "light" in (tmp_path / "curated.report.json").read_text()
    bad = CliRunner().invoke(cli_main, ["curate", str(labels), "--out", str(out), "--rounds", "1"])
    assert bad.exit_code != 0 and "--rounds needs --store" in bad.output


def test_tables_saved_by_api_callers_never_go_into_the_store_they_were_made_from(tmp_path):
    """The output rule in the library (issue 25): a labels table (save_quality, write_quality) and a curation
    (Curation.save, with its two reports) are refused at or inside the store the labels were computed on, before
    anything is written; beside the store they are written."""
    from dataclasses import replace

    from fiqa.core.errors import StoreError
    from fiqa.io.table import write_quality

    store = tmp_path / "store"
    (store / "images").mkdir(parents=True)
    base = _two_identities()
    labels = QualityTable(base.sample_id, base.score, base.status, base.reason, base.columns,
                          base.meta.updated(store=str(store)))
    for path in (store, store / "labels.parquet", store / "images" / "labels.parquet"):
        with pytest.raises(StoreError, match="the output would"):
            save_quality(labels, path)
    with pytest.raises(StoreError, match="inside the input"):
        write_quality(labels, store / "images" / "labels.csv")
    curation = curate(labels)
    assert curation.inputs == (str(store),)
    with pytest.raises(StoreError, match="inside the input"):
        curation.save(store / "images" / "curated.parquet")
    assert sorted(p.name for p in store.rglob("*")) == ["images"]  # nothing written
    with pytest.raises(StoreError, match="would overwrite the input"):  # a report named like the input itself
        replace(curation, inputs=(str(tmp_path / "c.report.md"),)).save(tmp_path / "c.parquet")
    assert not (tmp_path / "c.parquet").exists()
    written = curation.save(tmp_path / "curated.parquet")
    assert all(path.is_file() for path in written)
    assert save_quality(labels, tmp_path / "labels.parquet").is_file()
