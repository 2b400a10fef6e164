"""Speed and memory of the labellers on synthetic embeddings (MS1MV2-like class sizes).

Measured in one run:

1. the machine's float32 GEMM throughput, at the shapes ``cr`` uses (median of several products);
2. ``sdd`` (m = 24, K = 12) at N = ``--n`` (default 1,000,000 x 512, 20,000 identities): time, peak memory
   (tracemalloc: every allocation during ``fit``; and the process's maximum resident set) against the size of the
   embedding array;
3. ``cr`` exact at the same N: class sums and CCS on all rows; the nearest-other-centre search on a slice of
   ``--cr-rows`` rows beside its bare matrix products (interleaved), and the extrapolation to all rows;
4. a per-sample loop in the official code's manner (per image: draw indices, dot products,
   ``scipy.stats.wasserstein_distance``) beside the vectorised ``sdd`` at ``--loop-n`` (20,000) images;
5. ``sdd`` at N/4 and N/2 as well, a least-squares line through the three times, and the extrapolation to
   MS1MV2 (5.8M x 512, 85.7K identities); ``cr`` extrapolated by its flops at the measured rate.

Prints Markdown tables and writes them to ``benchmarks/results/label.md``.

Run: ``.venv/bin/python benchmarks/bench_label.py [--n 1000000] [--loop-n 20000] [--no-growth]``
(use e.g. ``--n 100000`` while developing).
"""
from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

import numpy as np
import scipy.stats

from _common import Report, machine_header, median_seconds, results_path, seconds
from fiqa.datasets import make_embeddings
from fiqa.label import create_labeler

IMAGES_PER_IDENTITY = 50          # 1M / 20K
MS1MV2 = (5_800_000, 85_742)      # images, identities


def gemm_gflops(rows: int, dim: int, cols: int, repeats: int = 5) -> float:
    """Median float32 GEMM rate (GFLOP/s) of (rows x dim) @ (dim x cols)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((rows, dim), dtype=np.float32)
    b = rng.standard_normal((cols, dim), dtype=np.float32)
    return 2.0 * rows * dim * cols / median_seconds(lambda: a @ b.T, repeats, warmup=1) / 1e9


def measured_fit(name: str, data, **params) -> dict:
    """Time and peak memory of one ``fit``."""
    labeler = create_labeler(name, **params)
    tracemalloc.start()
    start_cpu, start = time.process_time(), time.perf_counter()
    labeler.fit(data.vectors, data.identities)
    seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"seconds": seconds, "cpu": cpu, "peak": peak, "labels": labeler.labels_,
            "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def per_sample_sdd(vectors: np.ndarray, identities: np.ndarray, m: int, repeats: int, random_state: int) -> np.ndarray:
    """The official approach: a Python loop over images, fresh index draws per image, scipy's W1."""
    rng = np.random.default_rng(random_state)
    members = {c: np.flatnonzero(identities == c) for c in np.unique(identities)}
    n = len(vectors)
    raw = np.full((repeats, n), np.nan)
    for k in range(repeats):
        for i in range(n):
            same = members[identities[i]]
            if len(same) < 2:
                continue
            others = same[same != i]
            pos = others if len(others) <= m else rng.choice(others, m, replace=False)
            neg = []
            while len(neg) < m:  # uniform over other identities, without repeats
                j = int(rng.integers(n))
                if identities[j] != identities[i] and j not in neg:
                    neg.append(j)
            raw[k, i] = scipy.stats.wasserstein_distance(vectors[pos] @ vectors[i], vectors[neg] @ vectors[i])
    low, high = np.nanmin(raw, axis=1, keepdims=True), np.nanmax(raw, axis=1, keepdims=True)
    return (100 * (raw - low) / (high - low)).mean(axis=0)


def bare_gemms(vectors: np.ndarray, centres: np.ndarray, block_rows: int, chunk: int) -> None:
    """Only the matrix products of the nearest-centre search (same blocks, same shapes)."""
    for start in range(0, len(vectors), block_rows):
        block = np.asarray(vectors[start:start + block_rows])
        for first in range(0, len(centres), chunk):
            block @ centres[first:first + chunk].T


def cr_section(data, n_ids: int, cr_rows: int, emit) -> float:
    """cr's parts on the full data, and its nearest-other-centre search beside the bare GEMMs on a slice."""
    from fiqa.label.base import class_sums, rowwise_dot
    from fiqa.label.cr import CRLabeler

    labeler = CRLabeler()
    n, dim = data.vectors.shape
    tracemalloc.start()
    start = time.perf_counter()
    sums = class_sums(data.vectors, data.identities, n_ids)
    centres = (sums / np.linalg.norm(sums, axis=1, keepdims=True)).astype(np.float32)
    rowwise_dot(data.vectors, centres, data.identities)
    fixed = time.perf_counter() - start
    rows = min(cr_rows, n)
    chunk = -(-n_ids // -(-n_ids // labeler.centre_block))
    search, gemm = [], []
    for _ in range(3):  # interleaved, so that machine load affects both alike
        search.append(seconds(lambda: labeler.nearest_other_similarity(data.vectors[:rows], centres,
                                                                       data.identities[:rows])))
        gemm.append(seconds(lambda: bare_gemms(data.vectors[:rows], centres, labeler.block_rows, chunk)))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    search_s, gemm_s = float(np.median(search)), float(np.median(gemm))
    full = fixed + search_s * n / rows
    flops = 2.0 * n * n_ids * dim
    emit("## cr exact (class means, nearest other centre by blocked GEMMs)")
    emit()
    emit(f"Class sums, centres and CCS on all {n:,} rows: {fixed:.1f} s. The nearest-other-centre search "
         f"(2 N C d = {flops:.2e} flops at N = {n:,}) on the first {rows:,} rows against all {n_ids:,} centres, "
         f"beside only its matrix products (same blocks), interleaved, median of 3:")
    emit()
    emit("| rows | search (s) | its GEMMs alone (s) | ratio | GEMM rate in the search (GFLOP/s) | "
         "cr at full N, extrapolated (s) | peak alloc (MB) | peak / array |")
    emit("|---:|---:|---:|---:|---:|---:|---:|---:|")
    rate = 2.0 * rows * n_ids * dim / search_s
    emit(f"| {rows:,} | {search_s:.2f} | {gemm_s:.2f} | {search_s / gemm_s:.3f} | {rate / 1e9:.1f} | "
         f"{full:.0f} | {peak / 1e6:,.0f} | {peak / data.vectors.nbytes:.2f} |")
    emit()
    return flops / full


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--loop-n", type=int, default=20_000)
    parser.add_argument("--no-growth", action="store_true", help="Skip the N/4 and N/2 runs.")
    parser.add_argument("--no-cr", action="store_true")
    parser.add_argument("--cr-rows", type=int, default=20480,
                        help="Rows of the timed nearest-centre search (the full N takes 2 N C d flops).")
    parser.add_argument("--random-state", "--seed", type=int, default=0)
    args = parser.parse_args()
    emit = Report()
    n, dim = args.n, args.dim
    n_ids = n // IMAGES_PER_IDENTITY
    emit(f"# Labelling speed and memory (`benchmarks/bench_label.py --n {n}`)")
    emit()
    for line in machine_header():
        emit(line)
    emit()
    gflops_cr = gemm_gflops(2048, dim, 16384, repeats=3)
    gflops_square = gemm_gflops(4096, dim, 4096)
    emit(f"GEMM float32 throughput: {gflops_square:.1f} GFLOP/s at 4096x{dim}x4096, "
         f"{gflops_cr:.1f} GFLOP/s at cr's 2048x{dim}x16384 blocks.")
    emit()

    sizes = [n] if args.no_growth else [n // 4, n // 2, n]
    sdd_rows = []
    data = None
    for size in sizes:
        data = None
        start = time.perf_counter()
        data = make_embeddings(size, dim, size // IMAGES_PER_IDENTITY, min_class_size=2, random_state=args.random_state)
        generate = time.perf_counter() - start
        result = measured_fit("sdd", data, random_state=args.random_state)
        sdd_rows.append((size, size // IMAGES_PER_IDENTITY, data.vectors.nbytes, generate, result))
        print(f"sdd N={size}: {result['seconds']:.1f} s", flush=True)

    emit("## sdd (m = 24 positives, 24 negatives, K = 12, pool 32, blocks of 4096)")
    emit()
    emit("| N | identities | array (MB) | time (s) | CPU time (s) | peak alloc in fit (MB) | peak / array "
         "| max RSS / array | Spearman(label, true quality) |")
    emit("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size, ids, nbytes, _, result in sdd_rows:
        rho = scipy.stats.spearmanr(result["labels"].score, data.quality).statistic if size == n else float("nan")
        emit(f"| {size:,} | {ids:,} | {nbytes / 1e6:,.0f} | {result['seconds']:.1f} | {result['cpu']:.1f} | "
             f"{result['peak'] / 1e6:,.0f} | {result['peak'] / nbytes:.2f} | {result['maxrss'] / nbytes:.2f} | "
             f"{rho:.3f} |")
    emit()
    full = sdd_rows[-1]
    emit(f"Target: <= 60 s and peak <= 2x the embedding array at N = 1,000,000; measured "
         f"{full[4]['seconds']:.1f} s, fit allocations peak at {full[4]['peak'] / full[2]:.2f}x the array "
         f"(array + fit = {(full[2] + full[4]['peak']) / full[2]:.2f}x).")
    emit()

    if not args.no_cr:
        cr_rate = cr_section(data, n_ids, args.cr_rows, emit)
    del data

    loop_data = make_embeddings(args.loop_n, dim, args.loop_n // IMAGES_PER_IDENTITY, min_class_size=2,
                                random_state=args.random_state)
    start = time.perf_counter()
    loop_scores = per_sample_sdd(loop_data.vectors, loop_data.identities, 24, 12, args.random_state)
    loop_seconds = time.perf_counter() - start
    vectorised = measured_fit("sdd", loop_data, random_state=args.random_state)
    rho = scipy.stats.spearmanr(loop_scores, vectorised["labels"].score).statistic
    emit(f"## Per-sample loop (official approach) vs vectorised sdd, N = {args.loop_n:,}")
    emit()
    emit("| implementation | time (s) | ratio |")
    emit("|---|---:|---:|")
    emit(f"| per-sample loop + scipy.stats.wasserstein_distance | {loop_seconds:.1f} | 1.0 |")
    emit(f"| vectorised `sdd` | {vectorised['seconds']:.2f} | {loop_seconds / vectorised['seconds']:.0f}x faster |")
    emit()
    emit(f"Spearman between the loop's labels and the vectorised labels (independent draws): {rho:.3f}.")
    emit()

    if len(sdd_rows) >= 2:
        x = np.array([row[0] for row in sdd_rows], dtype=float)
        y = np.array([row[4]["seconds"] for row in sdd_rows])
        slope, intercept = np.polyfit(x, y, 1)
        peak_slope, peak_intercept = np.polyfit(x, [row[4]["peak"] for row in sdd_rows], 1)
        ms_n, ms_ids = MS1MV2
        emit("## MS1MV2 extrapolation (5.8M x 512, 85.7K identities)")
        emit()
        emit(f"sdd time grows linearly in N: least squares over N = {', '.join(f'{int(v):,}' for v in x)} gives "
             f"{slope * 1e6:.1f} s per million images + {intercept:.1f} s -> **{slope * ms_n + intercept:.0f} s "
             f"({(slope * ms_n + intercept) / 60:.1f} min)** for MS1MV2 on this machine; fit allocations "
             f"~{(peak_slope * ms_n + peak_intercept) / 1e9:.1f} GB beside the {ms_n * dim * 4 / 1e9:.1f} GB array "
             f"(per-image state is O(K N); blocks are bounded). The official code takes about 3 days.")
        if not args.no_cr:
            ms_flops = 2.0 * ms_n * ms_ids * dim
            emit(f"cr needs 2 N C d = {ms_flops:.2e} flops on MS1MV2 (it grows with N x C): at the measured "
                 f"{cr_rate / 1e9:.1f} GFLOP/s that is **{ms_flops / cr_rate / 3600:.1f} h** here; with a "
                 f"classifier's centres the same.")
        emit()
    emit.write(results_path("label.md"))


if __name__ == "__main__":
    main()
