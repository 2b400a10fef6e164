"""Hostile cases X01-X04: the HTML report of ``fiqa evaluate`` with HTML payloads in identities, file names, table
names, methods and the ``--pairs`` path (hostile-cases.md, section 7)."""
from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

import pytest

from hostile import fixtures
from hostile.harness import assert_ok, cli

pytestmark = pytest.mark.lfw

_BASE64 = re.compile(r"data:[a-z/+]+;base64,[A-Za-z0-9+/=]+")


def _page(report: Path) -> str:
    """The report's HTML without its inline base64 images (payload text cannot hide in them)."""
    return _BASE64.sub("data:BASE64", (report / "report.html").read_text(encoding="utf-8"))


def _raw_payloads(page: str, payloads: list[str]) -> list[str]:
    return [payload for payload in payloads if payload in page]


@pytest.fixture(scope="module")
def xss_folder(lfw: Path, work: Path) -> tuple[Path, Path]:
    """The store of four identity folders named with payloads (3 photos each, files named with a payload) and its
    sdd labels."""
    source = fixtures.make_xss_folder(lfw, work / "data")
    store = work / "out" / "xss_folder"
    assert_ok(cli("embed", source, "--out", store, "--batch-size", "12"))
    labels = work / "labels" / "xss_folder_sdd.parquet"
    assert_ok(cli("label", store, "-m", "sdd", "--out", labels))
    return store, labels


def test_X01_identities_table_names_and_methods(xss_folder, work, record_property):
    from fiqa.io.table import sidecar_path

    store, labels = xss_folder
    no_sidecar = work / "labels" / "<img src=x onerror=alert(3)>.parquet"  # method: the file stem
    shutil.copy(labels, no_sidecar)
    meta = json.loads(sidecar_path(labels).read_text(encoding="utf-8"))
    # a table is joined only with its sidecar (issue 25); one that names no method is shown by its file stem
    sidecar_path(no_sidecar).write_text(json.dumps({k: v for k, v in meta.items() if k != "method"}),
                                        encoding="utf-8")
    method = work / "labels" / "xss_method.parquet"
    shutil.copy(labels, method)
    sidecar_path(method).write_text(json.dumps({**meta, "method": "<script>alert(4)</script>"}), encoding="utf-8")
    report = work / "reports" / "xss_folder"
    run = cli("evaluate", store, "--scores", labels, "--scores", no_sidecar, "--scores", method, "--out", report,
              "--n-bootstrap", "0")
    assert_ok(run)
    page = _page(report)
    payloads = [*fixtures.XSS_FOLDERS, fixtures.XSS_FILE.format(0).rsplit(" ", 1)[0],
                "<img src=x onerror=alert(3)>", "<script>alert(4)</script>"]
    raw = _raw_payloads(page, payloads)
    escaped = [p for p in payloads if html.escape(p) in page or html.escape(p, quote=False) in page]
    record_property("observed", f"raw payloads in the page: {raw or 'none'}; {len(escaped)} of {len(payloads)} "
                                f"shown escaped")
    assert raw == []
    assert html.escape("<script>alert(4)</script>") in page  # the method is shown, escaped
    assert any(html.escape(name) in page or html.escape(name, quote=False) in page for name in fixtures.XSS_FOLDERS)


def test_X02_identities_from_a_list_source(lfw, work, record_property):
    listing = fixtures.make_xss_list(lfw, work / "data")
    store = work / "out" / "xss_list"
    assert_ok(cli("embed", listing, "--out", store, "--batch-size", "6"))
    labels = work / "labels" / "xss_list_sdd.parquet"
    assert_ok(cli("label", store, "-m", "sdd", "--out", labels))
    report = work / "reports" / "xss_list"
    assert_ok(cli("evaluate", store, "--scores", labels, "--out", report, "--n-bootstrap", "0"))
    page = _page(report)
    raw = _raw_payloads(page, list(fixtures.XSS_LIST_IDENTITIES))
    record_property("observed", f"raw payloads in the page: {raw or 'none'}")
    assert raw == []


def test_X03_payload_in_the_pairs_path(xss_folder, work, record_property):
    from fiqa.store import open_store

    store, labels = xss_folder
    opened = open_store(store)
    ids, identities = opened.samples.sample_id, opened.samples.identity
    rows = ["sample_a,sample_b,mated"]
    for a in range(len(ids)):
        for b in range(a + 1, len(ids)):
            rows.append(f"{ids[a]},{ids[b]},{int(identities[a] == identities[b])}")
    folder = work / "data" / "xss" / "pairs"
    (folder / "<script>alert(5)<").mkdir(parents=True)
    paths = [folder / "<script>alert(5)<" / "script>.csv", folder / '"><img src=x onerror=alert(6)>.csv']
    observed = []
    for number, path in enumerate(paths):
        path.write_text("\n".join(rows) + "\n", encoding="utf-8")
        report = work / "reports" / f"xss_pairs{number}"
        assert_ok(cli("evaluate", store, "--scores", labels, "--pairs", path, "--out", report, "--n-bootstrap", "0"))
        page = _page(report)
        raw = _raw_payloads(page, ["<script>alert(5)</script>", '"><img src=x onerror=alert(6)>'])
        observed.append(f"{path.name}: raw {raw or 'none'}")
        assert raw == [], raw
        assert html.escape(path.name) in page or html.escape(path.name, quote=False) in page  # still shown
    record_property("observed", "; ".join(observed))


def test_X04_the_report_is_self_contained(xss_folder, work, record_property):
    report = work / "reports" / "xss_folder"
    if not (report / "report.html").exists():
        store, labels = xss_folder
        assert_ok(cli("evaluate", store, "--scores", labels, "--out", report, "--n-bootstrap", "0"))
    page = (report / "report.html").read_text(encoding="utf-8")
    sources = re.findall(r"""\bsrc\s*=\s*["']([^"']*)""", page)
    links = re.findall(r"""\bhref\s*=\s*["']([^"']*)""", page)
    crops = page.count("data:image/jpeg;base64")
    record_property("observed", f"{len(sources)} src, all data: URIs; {len(links)} links, none to files; {crops} face "
                                f"crops inline ({len(page) // 1024} KiB)")
    assert sources and all(src.startswith("data:") for src in sources)
    assert all(link.startswith(("#", "http://", "https://")) for link in links), links
    assert crops > 0
