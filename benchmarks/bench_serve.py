"""``fiqa serve`` under load on loopback, beside the in-process scorer in the same run.

- the in-process scorer (``create_scorer().score(paths)``: decode, detect, align, batched inference) on the same LFW-dev
  photos, before and after the server levels; its scores are the expected answers;
- a real server process (``fiqa serve --port 0``, default settings) and an httpx async client in this process:
  requests/s and p50/p99 latency at concurrency 1, 8 and 32; every answer must be 200, ``ok`` and equal to the
  in-process score within 1e-4, anything else counts as an error; the mean inference batch (from ``/health``);
- the server's RSS sampled every 500 requests over ``--rss-requests`` requests (10,000) at concurrency 8;
- overload: a second server with ``--max-pending 4`` takes 64 requests at once: every answer is 200 or 503 with
  ``Retry-After``, and the server is healthy after.

Bounded: every phase stops at its request count or after ``--max-seconds`` (the RSS run: ``--rss-max-seconds``),
whichever comes first (the report says how many requests ran). The client shares the machine's cores with the
server, as on one box.

Prints a Markdown table and writes ``benchmarks/results/serve.md``.

Run: ``.venv/bin/python benchmarks/bench_serve.py [--photos 256] [--requests 400] [--rss-requests 10000]``
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from _common import emit, machine_header, results_path
from fiqa.score import create_scorer
from fiqa.serve import Workers
from fiqa.serve.server import inference_threads

ROOT = Path(__file__).resolve().parents[1]
CLI = "import sys; from fiqa.cli import main; sys.exit(main())"


class ServerProcess:
    """``fiqa serve --port 0 [args]`` in a subprocess; ``url`` once it answers ``/health``."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", CLI, "serve", "--port", "0", *args],
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        lines: queue.Queue[str] = queue.Queue()

        def read() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                lines.put(line)

        threading.Thread(target=read, daemon=True).start()
        line = lines.get(timeout=300)
        if "listening on " not in line:
            raise RuntimeError(f"fiqa serve did not start: {line!r}")
        self.url = line.split("listening on ")[1].split()[0]
        while httpx.get(f"{self.url}/health", timeout=60).status_code != 200:
            time.sleep(0.1)

    def rss_mib(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status")
        if not status.exists():
            return float("nan")
        line = next(x for x in status.read_text().splitlines() if x.startswith("VmRSS:"))
        return int(line.split()[1]) / 1024

    def health(self) -> dict:
        return httpx.get(f"{self.url}/health", timeout=60).json()

    def stop(self) -> int:
        self.process.terminate()
        return self.process.wait(timeout=60)


@dataclass
class Level:
    concurrency: int
    n_requests: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    rss_mib: list[tuple[int, float]] = field(default_factory=list)
    mean_batch: float = float("nan")

    @property
    def per_second(self) -> float:
        return self.n_requests / self.seconds

    def percentile_ms(self, q: float) -> float:
        return 1e3 * float(np.percentile(self.latencies, q))


async def _load(server: ServerProcess, bodies: list[bytes], expected: np.ndarray, concurrency: int,
                n_requests: int, max_seconds: float, rss_every: int = 0) -> Level:
    level = Level(concurrency)
    counter = itertools.count()
    deadline = time.monotonic() + max_seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:

        async def worker() -> None:
            while time.monotonic() < deadline:
                index = next(counter)
                if index >= n_requests:
                    return
                photo = index % len(bodies)
                start = time.perf_counter()
                try:
                    response = await client.post(f"{server.url}/score", content=bodies[photo],
                                                  headers={"Content-Type": "image/jpeg"})
                except httpx.HTTPError as exc:
                    level.errors.append(f"request {index}: {exc!r}")
                    continue
                level.latencies.append(time.perf_counter() - start)
                body = response.json()
                if response.status_code != 200 or body.get("status") != "ok" \
                        or abs(body["score"] - expected[photo]) > 1e-4:
                    level.errors.append(f"request {index}: {response.status_code} {body}")
                done = len(level.latencies)
                if rss_every and done % rss_every == 0:
                    level.rss_mib.append((done, server.rss_mib()))

        before = server.health()
        if rss_every:
            level.rss_mib.append((0, server.rss_mib()))
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        level.seconds = time.perf_counter() - start
        after = server.health()
    level.n_requests = len(level.latencies)
    batches = after["batches"] - before["batches"]
    level.mean_batch = (after["crops_scored"] - before["crops_scored"]) / batches if batches else float("nan")
    return level


async def _overload(server: ServerProcess, body: bytes, n_requests: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=n_requests)) as client:
        responses = await asyncio.gather(*(client.post(f"{server.url}/score", content=body,
                                                       headers={"Content-Type": "image/jpeg"})
                                           for _ in range(n_requests)), return_exceptions=True)
    for response in responses:
        if isinstance(response, BaseException):
            key = type(response).__name__
        elif response.status_code == 503:
            key = "503 + Retry-After" if response.headers.get("retry-after") else "503 without Retry-After"
        else:
            key = str(response.status_code)
        counts[key] = counts.get(key, 0) + 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", type=Path, default=Path(os.environ.get("FIQA_LFW") or
                                                          ROOT.parent / "shared" / "data" / "lfw-dev"))
    parser.add_argument("--photos", type=int, default=256, help="distinct LFW-dev photos, one per person")
    parser.add_argument("--requests", type=int, default=400, help="requests per concurrency level")
    parser.add_argument("--rss-requests", type=int, default=10_000)
    parser.add_argument("--max-seconds", type=float, default=300, help="cap of each concurrency level")
    parser.add_argument("--rss-max-seconds", type=float, default=1200, help="cap of the RSS run")
    args = parser.parse_args()
    header = machine_header()

    people = sorted(p for p in args.lfw.iterdir() if p.is_dir())
    paths = [str(sorted(person.glob("*.jpg"))[0]) for person in people[:args.photos]]
    scorer = create_scorer()
    scorer.score(paths[:8], progress=False)  # warm-up

    def in_process() -> tuple[float, np.ndarray]:
        start = time.perf_counter()
        table = scorer.score(paths, progress=False)
        return len(paths) / (time.perf_counter() - start), table.score

    first_rate, scores = in_process()
    keep = np.isfinite(scores)
    paths, expected = [p for p, k in zip(paths, keep) if k], scores[keep]
    bodies = [Path(p).read_bytes() for p in paths]
    print(f"in-process: {first_rate:.1f} images/s over {len(keep)} photos ({len(paths)} with a face)", flush=True)

    server = ServerProcess()
    idle_rss = server.rss_mib()
    levels = []
    for concurrency in (1, 8, 32):
        asyncio.run(_load(server, bodies, expected, concurrency, 2 * concurrency, args.max_seconds))  # warm-up
        level = asyncio.run(_load(server, bodies, expected, concurrency, args.requests, args.max_seconds))
        print(f"concurrency {concurrency}: {level.per_second:.1f} requests/s, p50 {level.percentile_ms(50):.0f} ms, "
              f"p99 {level.percentile_ms(99):.0f} ms, {len(level.errors)} errors", flush=True)
        levels.append(level)
    second_rate, _ = in_process()
    print(f"in-process again: {second_rate:.1f} images/s", flush=True)
    rss = asyncio.run(_load(server, bodies, expected, 8, args.rss_requests, args.rss_max_seconds,
                           rss_every=500))
    print(f"RSS run: {rss.n_requests} requests, {len(rss.errors)} errors", flush=True)
    healthy_after = server.health()["status"] == "ok"
    exit_code = server.stop()

    tight = ServerProcess("--max-pending", "4")
    overload = asyncio.run(_overload(tight, bodies[0], 64))
    tight_healthy = tight.health()["status"] == "ok"
    tight_exit = tight.stop()

    workers = Workers()
    in_process_rate = (first_rate + second_rate) / 2
    ratio = levels[1].per_second / in_process_rate
    rss_values = [value for _, value in rss.rss_mib]
    errors = [error for level in [*levels, rss] for error in level.errors]
    lines = [
        "# `fiqa serve` on loopback beside the in-process scorer",
        "",
        *header,
        "",
        f"The shipped default model; {len(paths)} LFW-dev photos (one per person, 250x250 JPEG), sent as "
        "`POST /score` bodies by an httpx async client in the benchmark process (it shares the cores with the "
        f"server). Server: `fiqa serve` with default settings ({workers.decode_threads} decode threads, batches of "
        f"up to {workers.batch_size} crops gathered for up to {1e3 * workers.batch_wait:g} ms, "
        f"{inference_threads(workers)} onnxruntime thread(s)); in-process: onnxruntime on all cores. An error is "
        "anything but 200 `ok` with the in-process score (within 1e-4).",
        "",
        "| | requests | requests/s | p50 latency (ms) | p99 latency (ms) | mean batch | errors |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| in-process `Scorer.score` (before / after) | {len(keep)} images x 2 | {first_rate:.1f} / "
        f"{second_rate:.1f} | | | | |",
        *[f"| server, concurrency {level.concurrency} | {level.n_requests} | {level.per_second:.1f} | "
          f"{level.percentile_ms(50):.1f} | {level.percentile_ms(99):.1f} | {level.mean_batch:.1f} | "
          f"{len(level.errors)} |" for level in levels],
        "",
        f"Server at concurrency 8 / in-process (mean of before and after): **{100 * ratio:.0f} %** "
        f"(target >= 80 %).",
        "",
        f"Server RSS over {rss.n_requests} requests at concurrency 8 ({rss.per_second:.1f} requests/s, "
        f"{len(rss.errors)} errors), sampled every 500: first {rss_values[0]:.1f} MiB, last {rss_values[-1]:.1f} "
        f"MiB, max {max(rss_values):.1f} MiB ({len(rss_values)} samples: "
        + ", ".join(f"{value:.0f}" for value in rss_values) + f"). Before its first request the server held "
        f"{idle_rss:.1f} MiB; the rest is allocated during the first levels (onnxruntime's memory arena grows to fit "
        "the largest batch it has run; each decode thread holds its own detector and buffers) and then kept.",
        "",
        "Overload: a server with `--max-pending 4` sent 64 requests at once: "
        + ", ".join(f"{count} x {kind}" for kind, count in sorted(overload.items()))
        + f"; healthy after: {'yes' if tight_healthy else 'NO'}.",
        "",
        f"Total errors: {len(errors)}. Servers healthy after the load: {'yes' if healthy_after else 'NO'}; "
        f"exit status on SIGTERM: {exit_code} and {tight_exit}.",
    ]
    if errors:
        lines += ["", "First errors:", *[f"- {error[:300]}" for error in errors[:5]]]
    emit("\n".join(lines), results_path("serve.md"))


if __name__ == "__main__":
    main()
