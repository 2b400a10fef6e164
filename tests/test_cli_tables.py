"""Table outputs: the format from the extension (.parquet, .csv, .jsonl, '-' for CSV on stdout) in ``fiqa score`` and
``fiqa label``, and ``QualityTable`` / ``SampleTable`` ``to_arrow()`` / ``to_pandas()``."""
from __future__ import annotations

import csv
import io
import json
import math
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from fiqa.cli import main
from fiqa.core.errors import InvalidParameterError
from fiqa.core.types import META_KEY, QualityTable, SampleTable
from fiqa.io.table import load_quality, read_table, save_quality, sidecar_path, write_quality

NOT_UTF8 = b"caf\xe9.jpg".decode("utf-8", "surrogateescape")  # a Latin-1 file name, as the OS hands it over


def _table() -> QualityTable:
    return QualityTable(np.array([3, 7, 9], np.int64), np.array([71.25, np.nan, 0.1]),
                        np.array(["ok", "no_face", "ok"], dtype=object),
                        np.array(["", "no face found", ""], dtype=object),
                        {"location": np.array(["a,b.jpg", NOT_UTF8, 'say "x".png'], dtype=object),
                         "n_faces": np.array([1, 0, 2], np.int32)},
                        {"method": "unit", "params": {"k": 2}, "random_state": np.int64(5)})


def _csv_rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8", "surrogateescape"), newline="")))


def test_csv_and_jsonl_hold_the_same_rows_as_parquet(tmp_path):
    table = _table()
    for name in ("t.parquet", "t.csv", "t.jsonl"):
        assert write_quality(table, tmp_path / name) == tmp_path / name
        assert json.loads(sidecar_path(tmp_path / name).read_text())["method"] == "unit"
    parquet = load_quality(tmp_path / "t.parquet")
    rows = _csv_rows((tmp_path / "t.csv").read_bytes())
    assert list(rows[0]) == ["sample_id", "score", "status", "reason", "location", "n_faces"]
    assert [int(r["sample_id"]) for r in rows] == parquet.sample_id.tolist()
    assert [float(r["score"]) if r["score"] else math.nan for r in rows][::2] == parquet.score[::2].tolist()
    assert rows[1]["score"] == "" and rows[1]["reason"] == "no face found"
    assert [r["location"] for r in rows] == parquet.columns["location"].tolist()  # commas, quotes, bytes intact
    assert b"caf\xe9.jpg" in (tmp_path / "t.csv").read_bytes()
    lines = [json.loads(line) for line in (tmp_path / "t.jsonl").read_bytes().decode("utf-8", "surrogateescape")
             .splitlines()]
    assert lines[0] == {"sample_id": 3, "score": 71.25, "status": "ok", "reason": "", "location": "a,b.jpg",
                        "n_faces": 1}
    assert lines[1]["score"] is None and lines[2]["location"] == 'say "x".png'
    write_quality(table, tmp_path / "t.csv")  # a re-run replaces its own table
    with pytest.raises(InvalidParameterError, match="ending in .parquet, .csv, .jsonl"):
        write_quality(table, tmp_path / "t.xlsx")
    assert not (tmp_path / "t.xlsx").exists()


def test_dash_writes_csv_to_stdout_as_bytes(capsysbinary):
    write_quality(_table(), "-")
    data = capsysbinary.readouterr().out
    assert _csv_rows(data)[1]["location"] == NOT_UTF8 and b"caf\xe9.jpg" in data
    print("still open", file=sys.stdout)  # the standard output is not closed by the write
    assert capsysbinary.readouterr().out == b"still open\n"


@pytest.fixture(scope="module")
def photo(lfw_dir) -> str:
    return str(sorted(lfw_dir.glob("A*/*.jpg"))[0])


def test_score_writes_each_format_and_stdout(photo, tmp_path):
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"junk")
    runner = CliRunner()
    for name in ("s.parquet", "s.csv", "s.jsonl"):
        result = runner.invoke(main, ["score", photo, str(junk), "-o", str(tmp_path / name), "--no-progress"])
        assert result.exit_code == 0, result.output
    parquet = load_quality(tmp_path / "s.parquet")
    assert parquet.status.tolist() == ["ok", "not_an_image"] and 0 <= parquet.score[0] <= 100
    rows = _csv_rows((tmp_path / "s.csv").read_bytes())
    assert [r["location"] for r in rows] == [photo, str(junk)]
    assert float(rows[0]["score"]) == parquet.score[0] and rows[1]["score"] == ""
    lines = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert lines[0]["score"] == parquet.score[0] and lines[1]["status"] == "not_an_image"
    dashed = runner.invoke(main, ["score", photo, str(junk), "-o", "-", "--no-progress"])
    assert dashed.exit_code == 0, dashed.output
    assert _csv_rows(dashed.stdout_bytes) == rows  # the table alone on stdout, the summary on stderr
    assert "2 images: 1 not_an_image, 1 ok" in dashed.stderr
    refused = runner.invoke(main, ["score", photo, "-o", str(tmp_path / "s.tsv")])
    assert refused.exit_code == 2 and ".parquet, .csv, .jsonl" in refused.output


def test_label_writes_csv_like_its_parquet(lfw_store, tmp_path):
    runner = CliRunner()
    args = ["label", str(lfw_store.root), "-m", "mean-positive"]
    assert runner.invoke(main, [*args, "-o", str(tmp_path / "l.parquet")]).exit_code == 0
    dashed = runner.invoke(main, [*args, "-o", "-"])
    assert dashed.exit_code == 0, dashed.output
    parquet = load_quality(tmp_path / "l.parquet")
    rows = _csv_rows(dashed.stdout_bytes)
    assert [int(r["sample_id"]) for r in rows] == parquet.sample_id.tolist()
    assert [r["identity"] for r in rows] == parquet.columns["identity"].tolist()
    scores = np.array([float(r["score"]) if r["score"] else np.nan for r in rows])
    np.testing.assert_array_equal(scores, parquet.score)
    assert "mean-positive:" in dashed.stderr and "samples labelled" in dashed.stderr


def test_to_arrow_is_the_table_on_disk(tmp_path):
    table = _table()
    arrow = table.to_arrow()
    assert arrow.column_names == ["sample_id", "score", "status", "reason", "location", "n_faces"]
    assert arrow.schema.field("sample_id").type == pa.int64() and arrow.schema.field("score").type == pa.float64()
    assert arrow.schema.field("status").type == pa.string() and arrow.schema.field("n_faces").type == pa.int32()
    assert arrow.column("score").to_pylist()[0] == 71.25 and math.isnan(arrow.column("score").to_pylist()[1])
    assert json.loads(arrow.schema.metadata[META_KEY]) == {"method": "unit", "params": {"k": 2}, "random_state": 5}
    # the location column holds a name that is not valid Unicode: bytes, marked, exactly as the Parquet file
    assert arrow.schema.field("location").type == pa.binary()
    assert arrow.column("location").to_pylist()[1] == b"caf\xe9.jpg"
    on_disk = pq.read_table(save_quality(table, tmp_path / "t.parquet"))
    assert on_disk.schema.equals(arrow.schema.remove_metadata(), check_metadata=True)  # field markers included
    for name in arrow.column_names:  # NaN == NaN here, unlike Table.equals
        np.testing.assert_array_equal(on_disk.column(name).to_numpy(zero_copy_only=False),
                                      arrow.column(name).to_numpy(zero_copy_only=False))
    plain = QualityTable(table.sample_id, table.score, table.status, table.reason)
    assert plain.to_arrow().schema.field("status").type == pa.string()


def test_to_pandas_keeps_strings_nan_and_meta():
    import pandas  # in the dev extra; fiqa itself does not need it

    frame = _table().to_pandas()
    assert isinstance(frame, pandas.DataFrame)
    assert frame.columns.tolist() == ["sample_id", "score", "status", "reason", "location", "n_faces"]
    assert frame["sample_id"].tolist() == [3, 7, 9] and frame["location"].tolist()[1] == NOT_UTF8
    assert frame["score"].isna().tolist() == [False, True, False]
    assert frame.attrs["method"] == "unit"
    samples = SampleTable(np.arange(2, dtype=np.int64), np.array(["x/1.jpg", NOT_UTF8], dtype=object),
                          np.array(["ann", ""], dtype=object), "folder").to_pandas()
    assert samples.to_dict("list") == {"sample_id": [0, 1], "location": ["x/1.jpg", NOT_UTF8],
                                       "identity": ["ann", ""]}
    assert samples.attrs == {"source": "folder"}


def test_sample_table_to_arrow_and_a_store_round_trip(lfw_store):
    arrow = lfw_store.samples.to_arrow()
    assert arrow.column_names == ["sample_id", "location", "identity"] and arrow.num_rows == len(lfw_store)
    assert json.loads(arrow.schema.metadata[META_KEY]) == {"source": lfw_store.samples.source}
    columns, _ = read_table(lfw_store.root / "samples.parquet")
    assert arrow.column("location").to_pylist() == columns["location"].tolist()
    assert arrow.column("identity").to_pylist() == lfw_store.samples.identity.tolist()


def test_to_pandas_without_pandas_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if it were not installed
    with pytest.raises(ImportError, match="pip install pandas"):
        _table().to_pandas()
    with pytest.raises(ImportError, match="pip install pandas"):
        SampleTable(np.arange(1), np.array(["a"], dtype=object), np.array([""], dtype=object), "images").to_pandas()
