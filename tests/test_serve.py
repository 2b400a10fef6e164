"""``fiqa serve`` as a user runs it: real server processes (``fiqa serve --port 0``), a real HTTP client (httpx).

Three servers: one with the default settings, one with tight limits (one request at a time, a 1 ms decode budget,
two parts per form) and one that is stopped while a request is in flight.
"""
from __future__ import annotations

import asyncio
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from click.testing import CliRunner

from fiqa.cli import main as cli_main
from fiqa.core.errors import InvalidParameterError
from fiqa.serve import Limits, Workers
from tolerances import SAME_GRAPH_SCORE

CLI = "import sys; from fiqa.cli import main; sys.exit(main())"
STARTUP_SECONDS = 120


class Server:
    """A ``fiqa serve`` subprocess; ``url`` once it listens."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.log = tmp_path / f"serve-{os.getpid()}-{time.monotonic_ns()}.log"
        self._log_file = self.log.open("w")
        self.process = subprocess.Popen([sys.executable, "-c", CLI, "serve", "--port", "0", *args],
                                        stdout=subprocess.PIPE, stderr=self._log_file, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.url = self._wait_for_url()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put("")

    def _wait_for_url(self) -> str:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                continue
            if "listening on " in line:
                url = line.split("listening on ")[1].split()[0]
                self.wait_healthy(url)
                return url
            if line == "":
                break
        self.stop()
        raise AssertionError(f"fiqa serve did not start:\n{self.log.read_text()}")

    def wait_healthy(self, url: str) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError(f"fiqa serve is not healthy:\n{self.log.read_text()}")

    def health(self) -> dict:
        return httpx.get(f"{self.url}/health", timeout=10).json()

    def memory_kib(self, field: str) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise KeyError(field)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log_file.close()
        return self.process.returncode


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("serve"))
    yield running
    assert running.stop() == 0, running.log.read_text()


@pytest.fixture(scope="module")
def tight_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("serve"), "--max-pending", "1", "--decode-timeout", "0.001",
                     "--max-parts", "2")
    yield running
    assert running.stop(signal.SIGINT) == 0, running.log.read_text()  # Ctrl+C stops it as cleanly as SIGTERM


@pytest.fixture(scope="module")
def photos(lfw_dir: Path) -> list[Path]:
    """16 LFW-dev photos of 16 people."""
    people = sorted(p for p in lfw_dir.iterdir() if p.is_dir())[:16]
    return [sorted(person.glob("*.jpg"))[0] for person in people]


@pytest.fixture(scope="module")
def in_process(photos: list[Path]) -> np.ndarray:
    """The in-process scorer's quality of ``photos`` (the shipped default model, as the server loads it)."""
    from fiqa.score import create_scorer

    table = create_scorer().score([str(p) for p in photos], progress=False)
    assert table.ok.all()
    return table.score


def post_image(url: str, data: bytes, content_type: str = "image/jpeg", **kwargs) -> httpx.Response:
    return httpx.post(f"{url}/score", content=data, headers={"Content-Type": content_type}, timeout=60, **kwargs)


def encode(image: np.ndarray, ext: str = ".png") -> bytes:
    ok, buffer = cv2.imencode(ext, image)
    assert ok
    return buffer.tobytes()


BLANK = encode(np.full((200, 200, 3), 127, np.uint8))
NO_IMAGE_FIELDS = {"score": None, "n_faces": None, "detection_score": None, "box": None}


@pytest.mark.lfw
def test_a_face_photo_gets_the_in_process_score_with_its_face(server, photos, in_process):
    response = post_image(server.url, photos[0].read_bytes())
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["status"] == "ok" and body["reason"] == ""
    assert 0 <= body["score"] <= 100
    assert body["score"] == pytest.approx(in_process[0], abs=SAME_GRAPH_SCORE)
    assert body["n_faces"] >= 1 and 0.7 <= body["detection_score"] <= 1
    x, y, width, height = body["box"]  # the aligned crop's square mapped back: a square box for a similarity map
    assert width == pytest.approx(height, abs=0.02) and 60 < width < 250  # LFW photos are 250x250
    assert x < 125 < x + width and y < 125 < y + height  # LFW centres the face


def test_a_blank_image_has_no_face_and_no_score(server):
    response = post_image(server.url, BLANK, "image/png")
    assert response.status_code == 200
    assert response.json() == {**NO_IMAGE_FIELDS, "n_faces": 0, "status": "no_face",
                               "reason": response.json()["reason"]}
    assert "no face" in response.json()["reason"]


@pytest.mark.parametrize(("data", "status", "reason"), [
    (b"this is not an image at all", "not_an_image", "not a decodable image"),
    (b"", "not_an_image", "empty"),
    (b"/etc/passwd", "not_an_image", "not a decodable image"),  # a path is bytes like any other: never opened
    (encode(np.zeros((8, 8, 3), np.uint8)), "too_small", "smaller than min_side=16"),
])
def test_bytes_that_are_no_usable_image_get_422_with_a_reason(server, data, status, reason):
    response = post_image(server.url, data)
    assert response.status_code == 422
    assert response.json() == {**NO_IMAGE_FIELDS, "status": status, "reason": response.json()["reason"]}
    assert reason in response.json()["reason"]


@pytest.mark.lfw
def test_a_truncated_jpeg_and_a_pixel_bomb_are_refused_from_their_headers(server, photos):
    jpeg = photos[0].read_bytes()
    truncated = post_image(server.url, jpeg[:len(jpeg) // 2])
    assert truncated.status_code == 422 and truncated.json()["status"] == "not_an_image"
    png = bytearray(encode(np.zeros((20, 20, 3), np.uint8)))
    png[16:24] = (20_000).to_bytes(4, "big") * 2  # IHDR says 20000 x 20000: refused before any decoding
    bomb = post_image(server.url, bytes(png), "image/png")
    assert bomb.status_code == 422
    assert bomb.json()["status"] == "too_large" and "20000x20000" in bomb.json()["reason"]


def test_other_content_types_routes_and_methods_get_json_errors(server):
    as_text = post_image(server.url, b"/etc/passwd", "text/plain")
    assert as_text.status_code == 415 and as_text.json()["status"] == "unsupported_media_type"
    assert httpx.post(f"{server.url}/score", json={"path": "/etc/passwd"}).status_code == 415
    missing = httpx.get(f"{server.url}/nowhere")
    assert missing.status_code == 404 and missing.json()["status"] == "not_found"
    wrong = httpx.get(f"{server.url}/score")
    assert wrong.status_code == 405 and wrong.json()["status"] == "method_not_allowed"
    broken = httpx.post(f"{server.url}/score", content=b"--x\r\nnonsense",
                        headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert broken.status_code == 400 and broken.json()["status"] == "bad_request"


@pytest.mark.lfw
def test_a_60_mb_body_gets_413_and_the_server_stays_healthy(server, photos, in_process):
    size = 60 * 1024 * 1024
    declared = post_image(server.url, bytes(size))
    assert declared.status_code == 413
    assert declared.json()["status"] == "body_too_large" and str(10 * 1024 * 1024) in declared.json()["reason"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is found while the body streams in
        block = bytes(1024 * 1024)
        for _ in range(size // len(block)):
            yield block

    streamed = httpx.post(f"{server.url}/score", content=chunks(), headers={"Content-Type": "image/jpeg"},
                          timeout=120)
    assert streamed.status_code == 413 and streamed.json()["status"] == "body_too_large"
    assert server.health()["status"] == "ok"
    after = post_image(server.url, photos[0].read_bytes())
    assert after.status_code == 200 and after.json()["score"] == pytest.approx(in_process[0], abs=SAME_GRAPH_SCORE)


def _raw_response(url: str, head: bytes, body_chunks: Iterator[bytes]) -> bytes:
    """Send a request's head and some of its body on a plain socket, never finishing the body, and return what
    the server answers meanwhile (its status line and headers)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=15) as sock:
        sock.sendall(head)
        for chunk in body_chunks:
            sock.sendall(chunk)
        answer = b""
        while b"\r\n\r\n" not in answer:
            received = sock.recv(65536)
            assert received, "the server closed the connection without answering"
            answer += received
    return answer


def test_a_body_over_the_limit_is_refused_before_it_ends(server):
    # a buffering server would wait for the rest of these bodies and answer nothing (recv times out)
    declared = _raw_response(server.url, b"POST /score HTTP/1.1\r\nHost: t\r\nContent-Type: image/jpeg\r\n"
                                         b"Content-Length: 62914560\r\n\r\n", iter(()))
    assert declared.startswith(b"HTTP/1.1 413 ")
    block = os.urandom(1024 * 1024)
    chunked = _raw_response(server.url, b"POST /score HTTP/1.1\r\nHost: t\r\nContent-Type: image/jpeg\r\n"
                                        b"Transfer-Encoding: chunked\r\n\r\n",
                            (b"%x\r\n%s\r\n" % (len(block), block) for _ in range(11)))
    assert chunked.startswith(b"HTTP/1.1 413 ")
    assert server.health()["status"] == "ok"


@pytest.mark.lfw
def test_a_multipart_form_gets_one_named_result_per_part(server, photos, in_process):
    files = [("first", ("a.jpg", photos[1].read_bytes(), "image/jpeg")),
             ("second", ("b.jpg", photos[2].read_bytes(), "image/jpeg")),
             ("blank", ("blank.png", BLANK, "image/png")),
             ("junk", ("junk.bin", b"\x00garbage", "application/octet-stream"))]
    response = httpx.post(f"{server.url}/score", files=files, timeout=60)
    assert response.status_code == 200
    results = response.json()["results"]
    assert [(r["name"], r["filename"], r["status"]) for r in results] == [
        ("first", "a.jpg", "ok"), ("second", "b.jpg", "ok"), ("blank", "blank.png", "no_face"),
        ("junk", "junk.bin", "not_an_image")]
    assert [r["score"] for r in results[:2]] == pytest.approx(in_process[1:3], abs=SAME_GRAPH_SCORE)
    assert results[2]["score"] is None and results[3]["score"] is None


@pytest.mark.lfw
def test_16_concurrent_requests_equal_the_in_process_scores(server, photos, in_process):
    bodies = [p.read_bytes() for p in photos]
    before = server.health()

    async def send_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=16)) as client:
            return await asyncio.gather(*(client.post(f"{server.url}/score", content=body,
                                                      headers={"Content-Type": "image/jpeg"}) for body in bodies))

    responses = asyncio.run(send_all())
    assert [r.status_code for r in responses] == [200] * 16
    assert [r.json()["status"] for r in responses] == ["ok"] * 16
    assert [r.json()["score"] for r in responses] == pytest.approx(in_process, abs=SAME_GRAPH_SCORE)
    after = server.health()
    crops, batches = (after["crops_scored"] - before["crops_scored"],
                      after["batches"] - before["batches"])
    assert crops == 16 and batches < crops  # concurrent requests shared inference calls


def test_health_and_model_card(server):
    health = server.health()
    assert health["status"] == "ok" and health["model"] == "default" and health["in_flight"] == 0
    from fiqa.score import model_card

    card = model_card()
    model = httpx.get(f"{server.url}/model").json()
    assert model["name"] == "default" and model["card"] == card
    assert model["sha256"] == card["sha256"] == health["model_sha256"]
    assert model["metadata"]["preprocess"]["input_size"] == [112, 112]


def test_the_server_never_imports_torch(server):
    maps = Path(f"/proc/{server.process.pid}/maps")
    if not maps.exists():
        pytest.skip("needs Linux /proc")
    assert not [line for line in maps.read_text().splitlines() if "/torch/" in line]


def _held_request(url: str, head: bytes, tail: bytes, release: threading.Event,
                  content_type: str = "image/jpeg") -> httpx.Response:
    """A POST whose body stops after ``head`` until ``release`` is set: a request in flight for as long as the
    test wants."""

    def body() -> Iterator[bytes]:
        yield head
        assert release.wait(60)
        yield tail

    return httpx.post(f"{url}/score", content=body(), headers={"Content-Type": content_type}, timeout=60)


def _wait_until(predicate, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def test_overload_gets_503_with_retry_after(tight_server):
    form = b"".join(b"--x\r\nContent-Disposition: form-data; name=\"p%d\"\r\n\r\nx\r\n" % i for i in range(3))
    release = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(_held_request, tight_server.url, form, b"--x--\r\n", release,
                           "multipart/form-data; boundary=x")
        _wait_until(lambda: tight_server.health()["in_flight"] == 1, "the held request is in flight")
        refused = post_image(tight_server.url, BLANK, "image/png")
        release.set()
        first = held.result(timeout=60)
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["status"] == "overloaded" and "max_pending=1" in refused.json()["reason"]
    assert first.status_code == 413 and first.json()["status"] == "too_many_parts"  # at most 2 parts here
    assert tight_server.health()["rejected"] >= 1
    _wait_until(lambda: tight_server.health()["in_flight"] == 0, "the server is idle again")
    assert post_image(tight_server.url, b"junk").status_code == 422  # served again once the slot is free


def test_an_image_slower_to_decode_than_the_budget_gets_decode_timeout(tight_server):
    # a 6000 x 6000 JPEG (36 MP, under the pixel limit) takes far longer than the 1 ms budget to decode
    big = encode(np.tile(np.arange(6000, dtype=np.uint8)[:, None, None], (1, 6000, 3)), ".jpg")
    response = post_image(tight_server.url, big)
    assert response.status_code == 422
    assert response.json()["status"] == "decode_timeout" and "decode_timeout=0.001" in response.json()["reason"]


@pytest.mark.lfw
@pytest.mark.slow
def test_terminate_finishes_the_request_in_flight_then_exits_0(tmp_path, photos, in_process):
    running = Server(tmp_path)
    jpeg = photos[3].read_bytes()
    release = threading.Event()
    try:
        with ThreadPoolExecutor(1) as pool:
            held = pool.submit(_held_request, running.url, jpeg[:1000], jpeg[1000:], release)
            _wait_until(lambda: running.health()["in_flight"] == 1, "the held request is in flight")
            running.process.send_signal(signal.SIGTERM)

            def refuses_new_connections() -> bool:
                try:
                    httpx.get(f"{running.url}/health", timeout=2)
                except httpx.TransportError:
                    return True
                return False

            _wait_until(refuses_new_connections, "the server stops taking connections")
            assert running.process.poll() is None  # still answering the request in flight
            release.set()
            response = held.result(timeout=60)
        assert response.status_code == 200
        assert response.json()["score"] == pytest.approx(in_process[3], abs=SAME_GRAPH_SCORE)
        started = time.monotonic()
        assert running.process.wait(timeout=30) == 0
        assert time.monotonic() - started < 10
    finally:
        release.set()
        running.stop()


@pytest.mark.parametrize(("make", "message"), [
    (lambda: Limits(max_body_bytes=0), "'max_body_bytes' parameter of Limits must be an int >= 1. Got 0"),
    (lambda: Limits(max_pending=2.5), "'max_pending' parameter of Limits must be an int >= 1"),
    (lambda: Limits(decode_timeout=float("nan")), "'decode_timeout' parameter of Limits must be a float > 0. Got nan"),
    (lambda: Limits(max_pixels=-1), "'max_pixels' parameter of Limits must be an int >= 1"),
    (lambda: Workers(batch_wait=2), "'batch_wait' parameter of Workers must be a float in [0, 1]. Got 2"),
    (lambda: Workers(decode_threads=0), "'decode_threads' parameter of Workers must be an int >= 1"),
])
def test_settings_out_of_their_domain_name_the_parameter(make, message):
    with pytest.raises(InvalidParameterError, match=re.escape(message)):
        make()


def test_a_taken_port_or_an_unknown_model_fails_in_one_line_before_serving():
    handler = signal.getsignal(signal.SIGTERM)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli_main, ["serve", "--port", str(port)])
    assert result.exit_code == 1 and f"Error: cannot listen on 127.0.0.1:{port}" in result.output
    unknown = CliRunner().invoke(cli_main, ["serve", "--port", "0", "--model", "defualt"])
    assert unknown.exit_code == 1 and "Did you mean 'default'?" in unknown.output
    assert signal.getsignal(signal.SIGTERM) == handler  # the command put the signal handler back


@pytest.mark.parametrize(("scale", "angle", "shift"), [(1.0, 0.0, (0.0, 0.0)), (2.0, 0.0, (10.0, 20.0)),
                                                       (1.5, 90.0, (300.0, 5.0))])
def test_crop_box_is_the_crop_square_mapped_back_into_the_image(scale, angle, shift):
    from fiqa.detect import ARCFACE_TEMPLATE
    from fiqa.serve.faces import crop_box

    turn = np.deg2rad(angle)
    rotation = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    landmarks = scale * ARCFACE_TEMPLATE.astype(np.float64) @ rotation.T + shift  # the face as it sits in a photo
    corners = scale * np.array([[0, 0], [112, 0], [112, 112], [0, 112]]) @ rotation.T + shift
    low, high = corners.min(axis=0), corners.max(axis=0)
    assert crop_box(landmarks) == pytest.approx((*low, *(high - low)), abs=1e-6)


def test_bombs_get_422_and_the_server_stays_small_and_answering(server):
    """Issue 25, item 1 through the server: the admission gate's refusals, the server's peak RSS (VmHWM) <= 1 GB
    after each, and /health still answering."""
    from test_admission import FACE, tiff

    bombs = {"dup_tags": (tiff(30000, 30000, dup=(100, 100)), "too_large"),
             "avif": (encode(FACE, ".avif"), "not_an_image"),
             "hdr": (encode(FACE.astype(np.float32), ".hdr"), "not_an_image"),
             "jp2": (encode(FACE, ".jp2"), "not_an_image")}
    for name, (data, status) in bombs.items():
        response = post_image(server.url, data)
        assert response.status_code == 422 and response.json()["status"] == status, (name, response.text)
        assert server.memory_kib("VmHWM") <= 1024 * 1024, name
        assert server.health()["status"] == "ok"


def test_content_length_with_transfer_encoding_is_refused(server):
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 4\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        reply = conn.recv(4096)
    assert reply.startswith(b"HTTP/1.1 400"), reply[:200]


def test_connections_with_half_sent_headers_are_closed(server):
    from fiqa.serve.server import HEADER_TIMEOUT

    host, port = server.url.removeprefix("http://").split(":")
    conns = [socket.create_connection((host, int(port)), timeout=HEADER_TIMEOUT + 10) for _ in range(10)]
    try:
        for conn in conns:
            conn.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        time.sleep(HEADER_TIMEOUT + 1.5)
        closed = 0
        for conn in conns:
            try:
                closed += conn.recv(1) == b""
            except (ConnectionResetError, TimeoutError):
                closed += 1
        assert closed == len(conns)
        assert server.health()["status"] == "ok"
    finally:
        for conn in conns:
            conn.close()
