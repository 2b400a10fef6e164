"""List files are confined to their folder (issue 25, item 7): an entry that resolves, symbolic links followed,
outside the list file's folder keeps its row and is refused with its reason, never opened, unless the caller allows
it (``allow_outside=True``, ``fiqa embed --allow-outside``)."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from fiqa.cli import main
from fiqa.io import open_source


def _crop(path: Path, value: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.random.default_rng(value).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    path.write_bytes(cv2.imencode(".png", image)[1].tobytes())
    return path


@pytest.fixture()
def listing(tmp_path: Path) -> Path:
    """``data/list.csv`` with three entries inside ``data/`` and three that lead out of it to real images."""
    data = tmp_path / "data"
    _crop(data / "a" / "1.png", 1)
    _crop(data / "a" / "2.png", 2)
    _crop(data / "b" / "3.png", 3)
    secret = _crop(tmp_path / "elsewhere" / "secret.png", 4)
    os.symlink(secret, data / "b" / "link-out.png")  # inside by name, outside once the link is followed
    os.symlink(data / "a" / "1.png", data / "b" / "link-in.png")  # a link that stays inside
    rows = ["path,identity", "a/1.png,a", f"{data / 'a' / '2.png'},a", "b/link-in.png,b",
            "../elsewhere/secret.png,x", f"{secret},x", "b/link-out.png,x"]
    (data / "list.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return data / "list.csv"


def test_entries_outside_the_list_folder_are_refused_each_with_its_reason(listing, caplog):
    source = open_source(listing)
    refused = [source.samples.refusal(i) for i in range(len(source.samples))]
    assert [bool(reason) for reason in refused] == [False, False, False, True, True, True]
    secret = os.path.realpath(listing.parent.parent / "elsewhere" / "secret.png")
    for entry, reason in zip(["../elsewhere/secret.png", secret, "b/link-out.png"], refused[3:]):
        assert f"list entry {entry!r} resolves to {secret!r}" in reason
        assert "outside the list file's folder" in reason and "allow_outside=True" in reason
    assert source.details["n_outside"] == 3
    assert "3 entries outside the list file's folder refused" in caplog.text
    allowed = open_source(listing, allow_outside=True)
    assert allowed.samples.refused is None and allowed.details == {"allow_outside": True}
    assert allowed.samples.location.tolist() == source.samples.location.tolist()  # the same rows either way


def _embed(*args: str):
    return CliRunner().invoke(main, ["embed", *args, "--aligned", "--no-progress"])


def test_embed_records_refused_entries_and_processes_the_others(listing, tmp_path):
    from fiqa.store import open_store

    refused = _embed(str(listing), "-o", str(tmp_path / "s1"))
    assert refused.exit_code == 0, refused.output
    store = open_store(tmp_path / "s1")
    # the outside image is a valid PNG: 'unreadable' means it was never opened, decoded or embedded
    assert store.status.tolist() == ["ok"] * 3 + ["unreadable"] * 3
    assert all("outside the list file's folder" in reason for reason in store.reason[3:])
    assert store.meta["source"]["n_outside"] == 3
    # allowing them later is another plan: the refusing store is not handed back as if it had read them
    again = _embed(str(listing), "-o", str(tmp_path / "s1"), "--allow-outside")
    assert again.exit_code == 1 and "made with different settings" in again.output, again.output
    assert "refused_sha256" in again.output and again.output.startswith(f"Error: {tmp_path / 's1'}: ")
    allowed = _embed(str(listing), "-o", str(tmp_path / "s2"), "--allow-outside")
    assert allowed.exit_code == 0, allowed.output
    assert open_store(tmp_path / "s2").status.tolist() == ["ok"] * 6


def test_the_ray_engine_records_refused_rows_without_sending_them(listing):
    """The Ray driver records the refused rows itself (as the local engine does) and sends only the others."""
    from fiqa.embed.ray_engine import _record_refused

    class Shards:
        dim, feature_width, batches = 4, 2, []

        def add(self, batch):
            self.batches.append(batch)

    samples, shards = open_source(listing).samples, Shards()
    left = _record_refused(samples, np.arange(1, 6), shards, "record")
    assert left.tolist() == [1, 2]
    (batch,) = shards.batches
    assert batch["row"].tolist() == [3, 4, 5] and batch["status"].tolist() == ["unreadable"] * 3
    assert batch["reason"].tolist() == [samples.refusal(i) for i in (3, 4, 5)]
    assert np.isnan(batch["raw"]).all() and batch["raw"].shape == (3, 4) and batch["features"].shape == (3, 2)
    assert (batch["n_faces"] == -1).all()
    from fiqa.embed.extract import SampleFailedError

    with pytest.raises(SampleFailedError, match="outside the list file's folder"):
        _record_refused(samples, np.arange(6), Shards(), "raise")


def _swap(link: Path, target: Path) -> None:
    """Point the symbolic link ``link`` at ``target`` in one step (as an attacker who owns the folder would)."""
    os.symlink(target, link.with_name(link.name + ".new"))
    os.replace(link.with_name(link.name + ".new"), link)


def test_a_link_swapped_after_the_list_is_opened_is_refused_when_read(listing, tmp_path):
    """The confinement is checked again on the opened file: ``b/link-in.png`` led inside when the list was opened
    and is pointed out of the folder before the images are read; the read refuses it (local engine, the Ray
    engine's face stage, and the gate itself), and reads the entries that stayed inside."""
    from fiqa.detect import DetectionSettings
    from fiqa.embed.extract import embed_source
    from fiqa.embed.ray_engine import FaceStage
    from fiqa.io.admit import AdmissionError, read_file

    source = open_source(listing)
    root = os.path.realpath(listing.parent)
    assert source.samples.confined_to == root and source.samples.refusal(2) == ""  # inside when opened
    secret = os.path.realpath(tmp_path / "elsewhere" / "secret.png")
    _swap(listing.parent / "b" / "link-in.png", Path(secret))

    store = embed_source(source, tmp_path / "store", backend="sface", detection=DetectionSettings(aligned=True),
                         progress=False)
    assert store.status.tolist() == ["ok", "ok", "unreadable", "unreadable", "unreadable", "unreadable"]
    assert f"resolves to {secret!r} when read, outside the list file's folder {root!r}" in store.reason[2]

    stage = FaceStage(settings=DetectionSettings(aligned=True), threads=1, within=source.samples.confined_to)
    batch = stage({"row": np.arange(3), "location": source.samples.location[:3]})
    assert batch["status"].tolist() == ["ok", "ok", "unreadable"] and "when read" in batch["reason"][2]

    with pytest.raises(AdmissionError, match="when read, outside the list file's folder"):
        read_file(str(listing.parent / "b" / "link-in.png"), within=root)
    assert read_file(str(listing.parent / "a" / "1.png"), within=root)  # inside: read
    assert read_file(str(listing.parent / "b" / "link-in.png"))  # not confined (allow_outside): read


def test_without_proc_the_opened_file_must_be_the_one_the_path_resolves_to(listing, tmp_path, monkeypatch):
    """Where ``/proc/self/fd`` is missing, the path is resolved again and must name the very file that is open: a
    link swapped back inside between the open and the check does not pass the outside file off as inside."""
    from fiqa.io import admit

    root = os.path.realpath(listing.parent)
    link = listing.parent / "b" / "link-in.png"
    secret = tmp_path / "elsewhere" / "secret.png"
    real_fstat = os.fstat

    def fstat_then_swap(fd):  # the open followed the link out; swap it back inside before the check
        info = real_fstat(fd)
        _swap(link, listing.parent / "a" / "1.png")
        return info

    monkeypatch.setattr(admit, "_kernel_path", lambda fd: None)  # as on a system without /proc
    assert admit.read_file(str(link), within=root)  # the inside file, found by the path and the descriptor
    _swap(link, secret)
    with pytest.raises(admit.AdmissionError, match="when read, outside"):
        admit.read_file(str(link), within=root)
    monkeypatch.setattr(admit.os, "fstat", fstat_then_swap)
    with pytest.raises(admit.AdmissionError, match="changed while it was opened"):
        admit.read_file(str(link), within=root)
