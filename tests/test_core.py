"""The shared skeleton: registry look-ups, the table format, QualityTable joins, provenance."""
from __future__ import annotations

import json

import numpy as np
import pytest

from fiqa.core.errors import StoreError
from fiqa.core.provenance import file_sha256, provenance
from fiqa.core.types import QualityTable, SampleTable
from fiqa.io.table import (
    load_quality,
    read_table,
    save_quality,
    sidecar_path,
    write_table,
)


def test_table_round_trip_keeps_types_and_metadata(tmp_path):
    path = tmp_path / "t.parquet"
    columns = {
        "sample_id": np.arange(4, dtype=np.int64),
        "score": np.array([0.5, np.nan, 2.0, -1.0]),
        "identity": np.array(["Zoë", "b", "", "d"], dtype=object),
    }
    write_table(path, columns, {"method": "x", "params": {"m": np.int64(24)}})
    back, meta = read_table(path)
    assert back["sample_id"].dtype == np.int64
    np.testing.assert_array_equal(back["score"], columns["score"])
    assert list(back["identity"]) == ["Zoë", "b", "", "d"]
    assert meta == {"method": "x", "params": {"m": 24}}
    assert json.loads(sidecar_path(path).read_text())["params"]["m"] == 24
    assert not list(tmp_path.glob(".*tmp*")), "temporary files must not be left behind"


def test_reading_a_non_table_names_the_file(tmp_path):
    bad = tmp_path / "labels.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(StoreError, match="labels.parquet"):
        read_table(bad)
    with pytest.raises(StoreError, match="does not exist"):
        read_table(tmp_path / "missing.parquet")
    write_table(tmp_path / "plain.parquet", {"a": np.arange(3)}, {})
    with pytest.raises(StoreError, match="missing column"):
        load_quality(tmp_path / "plain.parquet")


def _quality(ids, scores):
    n = len(ids)
    return QualityTable(np.asarray(ids, np.int64), np.asarray(scores, float), np.full(n, "ok", object),
                        np.full(n, "", object), {"identity": np.array(list("abcde"[:n]), object)}, {"method": "q"})


def test_quality_round_trip_and_join_by_sample_id(tmp_path):
    table = _quality([7, 3, 5], [70.0, 30.0, 50.0])
    save_quality(table, tmp_path / "q.parquet")
    back = load_quality(tmp_path / "q.parquet")
    assert back.method == "q"
    np.testing.assert_array_equal(back.sample_id, [7, 3, 5])
    assert list(back.columns["identity"]) == ["a", "b", "c"]
    # joined in another order, with ids the table lacks
    np.testing.assert_array_equal(back.aligned_to(np.array([3, 4, 5, 7, 99])), [30.0, np.nan, 50.0, 70.0, np.nan])
    assert np.isnan(_quality([], []).aligned_to(np.array([1, 2]))).all()


def test_quality_table_rejects_ragged_columns():
    with pytest.raises(ValueError, match="'score' has 2 rows, expected 3"):
        QualityTable(np.arange(3), np.zeros(2), np.full(3, "ok", object), np.full(3, "", object))


def test_sample_table_identity_codes_round_trip():
    samples = SampleTable(np.arange(4), np.array(list("wxyz"), object), np.array(["b", "a", "b", "c"], object),
                          "folder")
    codes, names = samples.identity_codes()
    assert list(names[codes]) == ["b", "a", "b", "c"]
    assert codes[0] == codes[2] != codes[1]
    assert len(samples.subset(np.array([0, 3]))) == 2


def test_provenance_records_params_and_versions(tmp_path):
    block = provenance(random_state=3)
    assert block["params"] == {"random_state": 3}
    assert {"python", "numpy"} <= set(block["versions"])
    f = tmp_path / "f.bin"
    f.write_bytes(b"abc")
    assert file_sha256(f) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_public_api_names_resolve_and_import_is_light():
    import subprocess
    import sys

    import fiqa

    for name in fiqa.__all__:
        assert getattr(fiqa, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        fiqa.nope  # noqa: B018
    # ``import fiqa`` alone must not pull in the heavy back ends
    code = "import sys, fiqa; print(sorted(m for m in ('torch', 'onnxruntime', 'cv2') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_check_int_accepts_ints_and_names_the_bad_parameter():
    import numpy as np

    from fiqa.core.errors import InvalidParameterError, check_int

    assert check_int("SDDLabeler", "n_pairs", np.int64(24), 1) == 24 and check_int("X", "n", -3) == -3
    assert check_int("X", "threads", None, 1, allow_none=True) is None
    with pytest.raises(InvalidParameterError, match=r"The 'n_pairs' parameter of SDDLabeler must be an int >= 1\. "
                                                    r"Got 0 instead\."):
        check_int("SDDLabeler", "n_pairs", 0, 1)
    for bad in (True, 2.0, "3", None):
        with pytest.raises(InvalidParameterError, match="must be an int"):
            check_int("X", "n", bad, 1)
    with pytest.raises(InvalidParameterError, match="must be an int >= 1 or None"):
        check_int("X", "threads", 0, 1, allow_none=True)


def test_locate_ids_joins_by_sample_id_in_any_order():
    from fiqa.core.types import locate_ids

    rows, found = locate_ids(np.array([30, 10, 20]), np.array([20, 40, 30, 10, 5]))
    assert found.tolist() == [True, False, True, True, False]
    assert rows[found].tolist() == [2, 0, 1]
    rows, found = locate_ids(np.array([], np.int64), np.array([1, 2]))
    assert found.tolist() == [False, False]


def test_lazy_exports_resolve_on_access_and_refuse_modules_outside_fiqa():
    import fiqa.io
    import fiqa.serve
    import fiqa.train
    from fiqa.core.lazy import lazy_exports

    for package in (fiqa, fiqa.io, fiqa.serve, fiqa.train):
        assert dir(package) == sorted(package.__all__)
        for name in package.__all__:
            assert getattr(package, name) is not None, f"{package.__name__}.{name}"
        with pytest.raises(AttributeError, match=f"module '{package.__name__}' has no attribute 'nope'"):
            package.nope  # noqa: B018
    with pytest.raises(ValueError, match="fiqa modules only, not from os"):
        lazy_exports("fiqa.somewhere", {"path": "os", "read_image": "fiqa.io.image"})


def test_read_table_gives_numbers_of_every_width_across_row_groups(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {"i8": pa.array([1, -2, 3, -4, 5], pa.int8()), "u16": pa.array([1, 2, 3, 4, 65535], pa.uint16()),
               "f16": pa.array(np.array([0.5, 1.5, np.nan, 2.5, -1.0], np.float16)),
               "f64": pa.array([0.1, 0.2, 0.3, 0.4, 0.5]), "with_null": pa.array([1, None, 3, 4, 5], pa.int32())}
    pq.write_table(pa.table(columns), tmp_path / "t.parquet", row_group_size=2)  # three row groups
    back, _ = read_table(tmp_path / "t.parquet")
    for name, column in columns.items():
        expected = column.to_numpy(zero_copy_only=False)
        assert back[name].dtype == expected.dtype, name
        np.testing.assert_array_equal(back[name], expected)
