"""Hostile cases E01-E37: ``fiqa embed`` on bad inputs (hostile-cases.md, section 1)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from hostile import fixtures
from hostile.harness import Run, assert_clean_error, assert_ok, cli, error_line, process

pytestmark = pytest.mark.lfw

MEGABYTE = 1 << 20
RSS_LIMIT = 1 << 30  # 1 GB: the TIFF bomb must be refused before its 900 MB of pixels exist


def _row(bad_rows: dict, name: str, record_property) -> dict:
    row = bad_rows[name]
    record_property("observed", f"{row['status']}" + (f" '{row['reason']}'" if row["reason"] else "")
                    + (f", cosine {row['cosine']:.4f}" if row["status"] == "ok" else ""))
    return row


def _failed(bad_rows, name, record_property, status: str, *needles: str) -> None:
    row = _row(bad_rows, f"Bad_Inputs/{name}", record_property)
    assert row["status"] == status, row
    for needle in needles:
        assert needle in row["reason"], row


def test_E01_corrupt_scan(bad_rows, record_property):
    row = _row(bad_rows, "Bad_Inputs/01_corrupt_scan.jpg", record_property)
    assert row["status"] in {"no_face", "not_an_image"} and row["reason"], row  # the row is kept, with a reason


def test_E02_corrupt_header(bad_rows, record_property):
    _failed(bad_rows, "01b_corrupt_header.jpg", record_property, "not_an_image", "corrupt JPEG header")


def test_E03_mild_corruption_is_not_detectable(bad_rows, bad_dir, record_property):
    from fiqa.io.image import read_image

    row = _row(bad_rows, "Variants/16_mild_corrupt.jpg", record_property)
    original = read_image(bad_dir / "Variants" / "00_original.jpg")
    damaged = read_image(bad_dir / "Variants" / "16_mild_corrupt.jpg")
    differ = int(np.any(original != damaged, axis=(1, 2)).sum())
    record_property("observed", f"ok, {differ} pixel rows differ from the original, cosine {row['cosine']:.4f}")
    assert row["status"] == "ok" and differ > 0 and row["cosine"] > 0.9, row


def test_E04_truncated_jpeg(bad_rows, record_property):
    _failed(bad_rows, "02_truncated.jpg", record_property, "not_an_image", "truncated")


def test_E05_text_named_jpg(bad_rows, record_property):
    _failed(bad_rows, "03_text.jpg", record_property, "not_an_image")


def test_E06_empty_file(bad_rows, record_property):
    _failed(bad_rows, "04_empty.jpg", record_property, "not_an_image", "empty file")


def _embedded(bad_rows, name, record_property, min_cosine: float) -> dict:
    row = _row(bad_rows, f"Bad_Inputs/{name}", record_property)
    assert row["status"] == "ok" and row["cosine"] >= min_cosine, row
    return row


def test_E07_rgba_png(bad_rows, record_property):
    _embedded(bad_rows, "05_alpha.png", record_property, 0.99)


def test_E08_16bit_rgb_png(bad_rows, record_property):
    _embedded(bad_rows, "06_16bit.png", record_property, 0.99)


def test_E09_16bit_gray_png(bad_rows, record_property):
    _embedded(bad_rows, "06b_16bit_gray.png", record_property, 0.85)  # colour is lost: 0.94 in 0.1.0


def test_E10_gray_jpeg(bad_rows, record_property):
    _embedded(bad_rows, "07_gray.jpg", record_property, 0.85)


def test_E11_cmyk_jpeg(bad_rows, bad_dir, record_property):
    from fiqa.io.image import read_image

    _embedded(bad_rows, "08_cmyk.jpg", record_property, 0.99)
    difference = np.abs(read_image(bad_dir / "Bad_Inputs" / "08_cmyk.jpg").astype(float)
                        - read_image(bad_dir / "Variants" / "00_original.jpg").astype(float)).mean()
    assert difference < 3.0, f"colours of the CMYK JPEG are off: mean abs pixel difference {difference:.2f}"


def test_E12_exif_orientation_is_applied(bad_rows, record_property):
    rotated = _embedded(bad_rows, "09_exif_rot6.jpg", record_property, 0.99)
    plain = bad_rows["Bad_Inputs/09b_rot_noexif.jpg"]  # the same pixels without the EXIF tag
    assert plain["status"] != "ok" or plain["cosine"] < rotated["cosine"] - 0.05, plain


def test_E13_tiny_image(bad_rows, record_property):
    # 20 px passes --min-side 16 and keeps its row. YuNet's answer on it is not reproducible: no face in most
    # processes, a face (confidence 0.84) in some (it depends on the process, not on the image), so both pass here
    row = _row(bad_rows, "Bad_Inputs/10_tiny20.jpg", record_property)
    assert row["status"] in {"no_face", "ok"}, row


def test_E14_png_header_bomb(bad_rows, record_property):
    _failed(bad_rows, "11_bomb_30000.png", record_property, "too_large", "30000x30000")


def test_E15_real_png_bomb(bad_rows, record_property):
    _failed(bad_rows, "11b_bomb_real_30000.png", record_property, "too_large", "30000x30000")


def test_E16_jpeg_header_65000(bad_rows, record_property):
    _failed(bad_rows, "14_jpeg_header_65000.jpg", record_property, "too_large", "65000x65000")


def test_E17_big_tiff(bad_rows, record_property):
    _failed(bad_rows, "15_big_8000.tif", record_property, "too_large", "8000x8000")


@pytest.mark.slow
def test_E18_tiff_bomb_bounded_memory(tiff_bomb, work, record_property):
    from fiqa.store import open_store

    out = work / "out" / "e18_tiffbomb"
    run = process("embed", tiff_bomb, "--out", out, "--workers", "0", measure_rss=True, timeout=300)
    record_property("observed", f"exit {run.code}, peak RSS {run.peak_rss_bytes / MEGABYTE:.0f} MB, "
                                f"{run.seconds:.1f} s: {error_line(run)}")
    assert run.traceback is None, str(run)
    assert run.code == 1 and "too_large" in run.output, str(run)  # nothing could be embedded, said clearly
    assert open_store(out).status.tolist() == ["too_large"]
    assert run.peak_rss_bytes <= RSS_LIMIT, f"peak RSS {run.peak_rss_bytes / MEGABYTE:.0f} MB > 1 GB"


def test_E19_noise(bad_rows, record_property):
    _failed(bad_rows, "12_noise.png", record_property, "no_face")


def test_E20_five_faces(bad_rows, record_property):
    row = _row(bad_rows, "Bad_Inputs/13_five_faces.jpg", record_property)
    record_property("observed", f"{row['status']}, n_faces={row['n_faces']}")
    assert row["status"] == "ok" and row["n_faces"] >= 5, row


def _store_files(out: Path) -> dict[str, str]:
    from fiqa.store import open_store

    store = open_store(out)
    return {str(location): str(status) for location, status in zip(store.samples.location, store.status)}


def _files_below(folder: Path) -> set[str]:
    return {os.path.join(parent, name) for parent, _, names in os.walk(folder) for name in names}


def test_E21_unicode_names(names_dir, work, record_property):
    source = names_dir
    out = work / "out" / "names store é"
    run = cli("embed", source, "--out", out, "--workers", "1")
    assert_ok(run)
    found = _store_files(out)
    record_property("observed", f"exit 0, {sum(s == 'ok' for s in found.values())} ok of {len(found)}, names intact")
    assert set(found) == _files_below(source) and set(found.values()) == {"ok"}


def test_E22_newline_in_name(newline_dir, work, record_property):
    source = newline_dir
    run = cli("embed", source, "--out", work / "out" / "names3")
    assert_ok(run)
    found = _store_files(work / "out" / "names3")
    newline = found.get(str(source / "A" / "new\nline.jpg"))
    record_property("observed", f"exit 0, {len(found)} rows, 'new\\nline.jpg' {newline}")
    assert newline == "ok" and set(found) == _files_below(source)


def test_E23_non_utf8_name(non_utf8_dir, work, record_property):
    source = non_utf8_dir
    out = work / "out" / "names2"
    first = cli("embed", source, "--out", out, "--workers", "1")
    again = cli("embed", source, "--out", out, "--workers", "1")  # 0.1.0: every re-run failed the same way
    assert_ok(first)
    assert_ok(again)
    found = _store_files(out)
    bad = os.fsdecode(os.fsencode(source / "A") + b"/" + fixtures.BAD_UTF8_NAME)
    record_property("observed", f"exit 0 twice; the bad name's row: {found.get(bad)}")
    assert found.get(bad) == "ok" and set(found) == _files_below(source)
    assert not Path(f"{out}.partial").exists()


def _loop_rows(found: dict[str, str], source: Path) -> dict[str, str]:
    return {name: found.get(str(source / "A" / name), "missing") for name in ("loop1.jpg", "loop2.jpg")}


def test_E24_symlink_loop_folder_kind(symlink_loops, work, record_property):
    from fiqa.store import open_store

    source = symlink_loops
    out = work / "out" / "symA_folder"
    run = cli("embed", source, "--kind", "folder", "--out", out, "--workers", "1")
    assert_ok(run)
    store = open_store(out)
    found = _store_files(out)
    loops = _loop_rows(found, source)
    record_property("observed", f"exit 0, {sum(s == 'ok' for s in found.values())} ok, loop files {loops}")
    assert sum(s == "ok" for s in found.values()) == 4
    assert "missing" not in loops.values() and "ok" not in loops.values()
    assert all(reason for status, reason in zip(store.status, store.reason) if status != "ok")


def test_E25_symlink_loop_images_kind(symlink_loops, work, record_property):
    source = symlink_loops
    run = cli("embed", source, "--kind", "images", "--out", work / "out" / "symA_images")
    assert_ok(run)
    found = _store_files(work / "out" / "symA_images")
    loops = _loop_rows(found, source)
    record_property("observed", f"exit 0, {sum(s == 'ok' for s in found.values())} ok, loop files {loops}")
    assert sum(s == "ok" for s in found.values()) == 4 and "missing" not in loops.values()


def test_E26_directory_loops(dir_loops, work, record_property):
    source = dir_loops
    runs = [cli("embed", source, "--out", work / "out" / "symB_folder", deadline=180),
            cli("embed", source, "--kind", "images", "--out", work / "out" / "symB_images", deadline=180)]
    for run in runs:
        assert_ok(run)  # no hang (the deadline), no traceback
    counts = [sorted(_store_files(work / "out" / name).values()) for name in ("symB_folder", "symB_images")]
    record_property("observed", f"exit 0 twice, no hang; rows {counts}")
    assert counts == [["ok"] * 4, ["ok"] * 4]


def test_E27_empty_folder(empty_dir, work, record_property):
    run = cli("embed", empty_dir, "--out", work / "out" / "e27")
    record_property("observed", error_line(run))
    assert_clean_error(run, "empty_folder", "no images")


def test_E28_txt_only(work, record_property):
    source = fixtures.make_txt_only(work / "data")
    run = cli("embed", source, "--out", work / "out" / "e28")
    record_property("observed", error_line(run))
    assert_clean_error(run, "txt_only", "no images found in identity sub-folders")


def test_E29_nonexistent_path(work, record_property):
    run = cli("embed", work / "data" / "does_not_exist", "--out", work / "out" / "e29")
    record_property("observed", error_line(run))
    assert_clean_error(run, "does_not_exist", "no such file or folder")


def test_E30_root_bypasses_permission_bits(lfw, work, record_property):
    if os.geteuid() != 0:
        pytest.skip("only root bypasses permission bits")
    source = fixtures.make_two_people(lfw, work / "data" / "e30", "sub")
    os.chmod(source / "B", 0)
    try:
        run = cli("embed", source, "--out", work / "out" / "e30")
    finally:
        os.chmod(source / "B", 0o755)
    assert_ok(run)
    found = _store_files(work / "out" / "e30")
    record_property("observed", f"as root: exit 0, {len(found)} rows ok despite mode 000 (so E31-E35 drop "
                                f"CAP_DAC_OVERRIDE)")
    assert sorted(found.values()) == ["ok"] * 4


def _unprivileged(runs: dict, key: str, record_property) -> Run:
    run = runs[key]
    record_property("observed", f"exit {run.code}: {error_line(run) if run.code else 'ok'}")
    return run


def test_E31_unreadable_root(unprivileged_runs, record_property):
    for key in ("E31_folder", "E31_auto"):
        run = _unprivileged(unprivileged_runs, key, record_property)
        assert_clean_error(run, "root0", "ermission denied")


def test_E32_unreadable_root_images_kind(unprivileged_runs, record_property):
    run = _unprivileged(unprivileged_runs, "E32", record_property)
    assert_clean_error(run, "root0", "ermission denied")


def _not_silent(run: Run, store_path: Path, record_property) -> None:
    """An unreadable identity folder: a clear error naming it, or rows for its images (never silently fewer)."""
    if run.code != 0:
        assert_clean_error(run, "B", "ermission denied")
        return
    assert_ok(run)
    found = _store_files(store_path)
    record_property("observed", f"exit 0, rows {sorted(found.values())}")
    assert len(found) == 4, found


def test_E33_unreadable_identity_folder(unprivileged_runs, work, record_property):
    _not_silent(_unprivileged(unprivileged_runs, "E33", record_property), work / "out" / "perm" / "E33",
                record_property)


def test_E34_unreadable_identity_folder_images_kind(unprivileged_runs, work, record_property):
    _not_silent(_unprivileged(unprivileged_runs, "E34", record_property), work / "out" / "perm" / "E34",
                record_property)


def test_E35_unreadable_file(unprivileged_runs, work, record_property):
    observed = []
    for key in ("E35_folder", "E35_images"):
        run = unprivileged_runs[key]
        assert_ok(run)
        found = {Path(k).name: v for k, v in _store_files(work / "out" / "perm" / key).items()}
        observed.append(f"{key}: {found.get('Celine_Dion_0001.jpg')}")
        assert found.pop("Celine_Dion_0001.jpg") == "unreadable" and sorted(found.values()) == ["ok"] * 3
    from fiqa.store import open_store

    store = open_store(work / "out" / "perm" / "E35_folder")
    reasons = [r for s, r in zip(store.status, store.reason) if s == "unreadable"]
    record_property("observed", f"exit 0; {'; '.join(observed)} '{reasons[0]}'")
    assert reasons == ["permission denied"]


def test_E36_on_error_raise(bad_dir, work, record_property):
    out = work / "out" / "e36"
    run = cli("embed", bad_dir, "--out", out, "--on-error", "raise", "--batch-size", "4", "--chunk-size", "4")
    record_property("observed", error_line(run))
    assert_clean_error(run, str(bad_dir / "Bad_Inputs"))
    assert Path(f"{out}.partial", "plan.json").is_file()  # finished chunks are kept for a resume


def test_E37_invalid_numeric_options(good_dir, work, record_property):
    observed = []
    for option, value, name in (("--batch-size", "0", "batch_size"), ("--chunk-size", "-1", "chunk_size"),
                                ("--max-pixels", "0", "max_pixels"), ("--workers", "-2", "workers"),
                                ("--score-threshold", "5", "score_threshold")):
        run = cli("embed", good_dir, "--out", work / "out" / f"e37{name}", option, value)
        assert_clean_error(run, name, value)
        assert not (work / "out" / f"e37{name}").exists()
        observed.append(error_line(run))
    record_property("observed", " | ".join(observed))
