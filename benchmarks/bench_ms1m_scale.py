"""A real MS1MV2-size labelling run: 5,800,000 x 512 memory-mapped vectors, 85,742 identities, and one identity of
50,000 samples.

Steps, each in a child process of its own (so that its peak resident set is its own), bounded by ``--timeout``:

1. ``generate``: :func:`fiqa.datasets.make_embeddings` writes the vectors to ``ROOT/vectors.npy`` block by
   block (skewed MS1MV2-like class sizes: log-normal spread 0.6, at least 2 images) plus identities, norms and the
   true quality; kept and reused by later runs with the same parameters (its row is then the recorded one);
2. ``sdd``, ``reference-consensus`` (with the raw norms), ``cr`` with ``nearest="approximate"``: ``create_labeler(
   name).fit`` on the memory-mapped vectors, labels saved beside the data;
3. ``cr-exact``: the class centres and CCS on all rows, then the exact nearest-other-centre search on a seeded
   sample of ``--sample-rows`` rows: it gives the recall of the approximate search (rows whose approximate nearest
   other centre has the exact one's similarity, within 1e-6) and the exact run's time, extrapolated to all rows
   (marked as such; at 2 N C d flops it takes hours on 2 cores);
4. ``big-sdd``, ``big-reference-consensus``: one identity of 50,000 samples beside 1,000 samples of 50 others
   (51,000 x 512 in memory): the peak resident set must stay within 2 GB;
5. ``features`` and ``head-epoch``: a ``features.npy`` of N x 1,024 float16 (what ``fiqa embed --features`` stores:
   SFace's pooled last stage; synthetic values carrying the true quality), then one epoch of the default head
   (:class:`fiqa.train.models.QualityHead`, ``TrainConfig(epochs=1)``, batch 64) by :func:`fiqa.train.loop.fit` on
   the reference-consensus labels, reading the features memory-mapped through
   :class:`fiqa.train.features.StoreFeatureInputs` (``fiqa train``'s input for a store with features), one sorted
   read per batch, with 20,000 seeded rows held out for its validation pass;
6. ``ann`` (optional, needs ``faiss-cpu``, not a fiqa dependency): faiss HNSW and IVF indexes over the same class
   centres, searched for the same sampled rows, with their recall of the exact nearest other centre and CPU time,
   beside the exact GEMM search: why ``nearest="approximate"`` screens with int8 GEMMs instead of an ANN index.

Every row gives wall time, CPU time (user + system of the child) and the child's peak resident set (``ru_maxrss``;
memory-mapped pages it touched count). The machine is shared: the load average is in the header.

Run: ``.venv/bin/python benchmarks/bench_ms1m_scale.py [--root runs/ms1m] [--n 5800000] [--delete]``
(``--n 200000 --identities 3000`` for a quick check with ``FIQA_BENCH_RESULTS`` set).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from _common import Report, load_average, machine_header, results_path

MS1MV2 = (5_800_000, 85_742)
BIG = (50_000, 50, 20)  # the big identity's size, the other identities and their size
LABEL_STEPS = ("sdd", "reference-consensus", "cr")
GOALS = {"sdd": 300.0, "reference-consensus": 300.0, "cr": 900.0}


# ---- child steps --------------------------------------------------------------------------------------------------
def _data(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (np.load(root / "vectors.npy", mmap_mode="r"), np.load(root / "identities.npy"),
            np.load(root / "norms.npy"))


def child_generate(root: Path, args: argparse.Namespace) -> dict:
    from fiqa.datasets import make_embeddings

    data = make_embeddings(args.n, args.dim, args.identities, spread=0.6, min_class_size=2,
                           out=root / "vectors.npy", random_state=args.random_state)
    np.save(root / "identities.npy", data.identities)
    np.save(root / "norms.npy", data.norms)
    np.save(root / "quality.npy", data.quality.astype(np.float32))
    sizes = np.bincount(data.identities)
    return {"file_bytes": (root / "vectors.npy").stat().st_size, "median_size": float(np.median(sizes)),
            "max_size": int(sizes.max()), "min_size": int(sizes.min())}


def child_label(root: Path, name: str, args: argparse.Namespace) -> dict:
    import scipy.stats

    from fiqa.label import create_labeler

    vectors, identities, norms = _data(root)
    params = {"nearest": "approximate"} if name == "cr" else {}
    labeler = create_labeler(name, random_state=args.random_state, **params)
    start = time.perf_counter()
    labeler.fit(vectors, identities, norms=norms if name == "reference-consensus" else None)
    seconds = time.perf_counter() - start
    table = labeler.labels_
    np.save(root / f"labels-{name}.npy", table.score.astype(np.float32))
    if name == "cr":
        np.save(root / "cr-nnccs.npy", table.columns["nnccs"])
    quality = np.load(root / "quality.npy")
    ok = np.isfinite(table.score)
    rho = float(scipy.stats.spearmanr(table.score[ok], quality[ok]).statistic)
    return {"fit_seconds": seconds, "labelled": int(ok.sum()), "spearman_quality": rho}


def child_cr_exact(root: Path, args: argparse.Namespace) -> dict:
    from fiqa.label.base import class_sums, rowwise_dot
    from fiqa.label.cr import CRLabeler

    vectors, identities, _ = _data(root)
    names, codes = np.unique(identities, return_inverse=True)
    start, cpu = time.perf_counter(), time.process_time()
    sums = class_sums(vectors, codes, len(names))
    centres = (sums / np.linalg.norm(sums, axis=1, keepdims=True)).astype(np.float32)
    rowwise_dot(vectors, centres, codes)
    fixed, fixed_cpu = time.perf_counter() - start, time.process_time() - cpu
    rows = np.sort(np.random.default_rng(args.random_state).choice(len(codes), size=args.sample_rows, replace=False))
    sample = np.asarray(vectors[rows], np.float32)
    start, cpu = time.perf_counter(), time.process_time()
    exact = CRLabeler().nearest_other_similarity(sample, centres, codes[rows])
    search, search_cpu = time.perf_counter() - start, time.process_time() - cpu
    approximate = np.load(root / "cr-nnccs.npy")[rows]
    hits = np.abs(approximate - exact) <= 1e-6
    scale = len(codes) / len(rows)
    return {"rows": len(rows), "recall": float(hits.mean()), "misses": int((~hits).sum()),
            "max_abs_error": float(np.max(np.abs(approximate - exact))),
            "fixed_seconds": fixed, "fixed_cpu": fixed_cpu, "search_seconds": search, "search_cpu": search_cpu,
            "extrapolated_seconds": fixed + search * scale, "extrapolated_cpu": fixed_cpu + search_cpu * scale}


def child_ann(root: Path, args: argparse.Namespace) -> dict:
    import faiss

    from fiqa.label.base import class_sums
    from fiqa.label.cr import CRLabeler

    vectors, identities, _ = _data(root)
    names, codes = np.unique(identities, return_inverse=True)
    sums = class_sums(vectors, codes, len(names))
    centres = (sums / np.linalg.norm(sums, axis=1, keepdims=True)).astype(np.float32)
    rows = np.sort(np.random.default_rng(args.random_state).choice(len(codes), size=args.sample_rows, replace=False))
    sample, own = np.asarray(vectors[rows], np.float32), codes[rows]
    cpu = time.process_time()
    exact = CRLabeler().nearest_other_similarity(sample, centres, own)
    results = [{"index": "exact float32 GEMMs", "build_cpu": 0.0, "search_cpu": time.process_time() - cpu,
                "recall": 1.0}]

    def searched(index, name: str, build_cpu: float) -> None:
        cpu = time.process_time()
        similarity, found = index.search(sample, 2)  # the own centre is usually first: keep the best other
        search_cpu = time.process_time() - cpu
        similarity[found == own[:, None]] = -np.inf
        recall = float(np.mean(np.abs(similarity.max(axis=1) - exact) <= 1e-5))
        results.append({"index": name, "build_cpu": build_cpu, "search_cpu": search_cpu, "recall": recall})
        print(results[-1], flush=True)

    cpu = time.process_time()
    hnsw = faiss.IndexHNSWFlat(centres.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = 200
    hnsw.add(centres)
    build = time.process_time() - cpu
    for ef in (128, 512):
        hnsw.hnsw.efSearch = ef
        searched(hnsw, f"faiss HNSW (M = 32, efSearch = {ef})", build)
    cpu = time.process_time()
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(centres.shape[1]), centres.shape[1], 1024, faiss.METRIC_INNER_PRODUCT)
    ivf.train(centres)
    ivf.add(centres)
    build = time.process_time() - cpu
    for probes in (16, 128):
        ivf.nprobe = probes
        searched(ivf, f"faiss IVF-Flat (1024 lists, {probes} probed)", build)
    return {"indexes": results, "rows": len(rows)}


FEATURE_WIDTH = 1024
VALIDATION_ROWS = 20_000


def child_features(root: Path, args: argparse.Namespace) -> dict:
    """``features.npy``: noise plus the true quality along a fixed direction, float16, written block by block."""
    quality = np.load(root / "quality.npy")
    rng = np.random.default_rng([args.random_state, 7])
    direction = rng.normal(size=FEATURE_WIDTH).astype(np.float32)
    out = np.lib.format.open_memmap(root / "features.npy", mode="w+", dtype=np.float16,
                                    shape=(len(quality), FEATURE_WIDTH))
    for start in range(0, len(quality), 65536):
        stop = min(start + 65536, len(quality))
        block = rng.normal(size=(stop - start, FEATURE_WIDTH)).astype(np.float32)
        block += (quality[start:stop, None] - 0.5) * direction
        out[start:stop] = block
    out.flush()
    return {"file_bytes": (root / "features.npy").stat().st_size}


class _FeatureStore:
    """What :class:`fiqa.train.features.StoreFeatureInputs` reads of a store: its folder, length and features."""

    def __init__(self, root: Path, n: int) -> None:
        from fiqa.embed.features import SFACE_TAPS, STORE_COLUMNS
        from fiqa.store import FEATURES_FILE, read_jsonable

        self.root, self._n = root, n
        self.meta = {"features": {"file": FEATURES_FILE, "dtype": "float16", "columns": list(STORE_COLUMNS),
                                  "dim": FEATURE_WIDTH, "spec": read_jsonable(SFACE_TAPS.to_dict())}}

    def __len__(self) -> int:
        return self._n


def child_head_epoch(root: Path, args: argparse.Namespace) -> dict:
    import scipy.stats
    import torch

    from fiqa.train.config import TrainConfig
    from fiqa.train.features import StoreFeatureInputs
    from fiqa.train.loop import TensorPairs, fit, predict
    from fiqa.train.models import QualityHead

    labels = np.load(root / "labels-reference-consensus.npy")
    rows = np.flatnonzero(np.isfinite(labels))
    rng = np.random.default_rng(args.random_state)
    validation = np.sort(rng.choice(rows, size=min(VALIDATION_ROWS, len(rows) // 10), replace=False))
    train = np.setdiff1d(rows, validation)
    inputs = StoreFeatureInputs(_FeatureStore(root, len(labels)))  # type: ignore[arg-type]
    config = TrainConfig(epochs=1, random_state=args.random_state)
    torch.manual_seed(args.random_state)
    model = QualityHead()
    start = time.perf_counter()
    result = fit(model, TensorPairs(inputs, train, labels[train]), TensorPairs(inputs, validation, labels[validation]),
                 config, root / "head-epoch", resume=False, device="cpu")
    seconds = time.perf_counter() - start
    quality = np.load(root / "quality.npy")[validation]
    rho = float(scipy.stats.spearmanr(predict(model, TensorPairs(inputs, validation, labels[validation])),
                                      quality).statistic)
    return {"fit_seconds": seconds, "n_train": int(len(train)), "n_validation": int(len(validation)),
            "batch_size": config.batch_size, "steps": int(-(-len(train) // config.batch_size)),
            "validation_spearman_labels": result.spearman, "validation_spearman_quality": rho}


def child_big(name: str, args: argparse.Namespace) -> dict:
    from fiqa.datasets import make_embeddings
    from fiqa.label import create_labeler

    big, n_others, other_size = BIG
    sizes = np.array([big] + [other_size] * n_others)
    data = make_embeddings(int(sizes.sum()), args.dim, len(sizes), sizes=sizes, random_state=args.random_state)
    labeler = create_labeler(name, random_state=args.random_state)
    start = time.perf_counter()
    labeler.fit(data.vectors, data.identities, norms=data.norms if name == "reference-consensus" else None)
    ok = np.isfinite(labeler.labels_.score)
    return {"fit_seconds": time.perf_counter() - start, "labelled": int(ok.sum()),
            "array_bytes": int(data.vectors.nbytes)}


def run_child(args: argparse.Namespace) -> None:
    root = Path(args.root)
    step = args.child
    if step == "generate":
        result = child_generate(root, args)
    elif step in LABEL_STEPS:
        result = child_label(root, step, args)
    elif step == "cr-exact":
        result = child_cr_exact(root, args)
    elif step == "ann":
        result = child_ann(root, args)
    elif step == "features":
        result = child_features(root, args)
    elif step == "head-epoch":
        result = child_head_epoch(root, args)
    else:
        result = child_big(step.removeprefix("big-"), args)
    (root / f"{step}.json").write_text(json.dumps(result))


# ---- the parent: one child per step ----------------------------------------------------------------------------
def measure(step: str, args: argparse.Namespace) -> dict:
    """Run ``step`` in a child process; its wall time, CPU time, peak RSS and the JSON it wrote."""
    root = Path(args.root)
    (root / f"{step}.json").unlink(missing_ok=True)
    command = [sys.executable, __file__, "--child", step, *sys.argv[1:]]
    start = time.perf_counter()
    process = subprocess.Popen(command)
    deadline = start + args.timeout
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            process.kill()
            pid, status, usage = os.wait4(process.pid, 0)
            break
        time.sleep(0.5)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    result = {"step": step, "wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "maxrss": usage.ru_maxrss * 1024,
              "exit": code, "timed_out": wall >= args.timeout and code != 0, "load": load_average()}
    output = root / f"{step}.json"
    if code == 0 and output.exists():
        result.update(json.loads(output.read_text()))
    (root / f"{step}.measured.json").write_text(json.dumps(result))
    print(f"{step}: {wall:.1f} s wall, {result['cpu']:.1f} s CPU, peak RSS {result['maxrss'] / 2**30:.2f} GiB, "
          f"exit {code}", flush=True)
    return result


def _status(result: dict) -> str:
    if result["timed_out"]:
        return f"timed out at {result['wall']:.0f} s"
    return "ok" if result["exit"] == 0 else f"failed (exit {result['exit']})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="runs/ms1m", help="Folder for the data set (about 12 GB at full size).")
    parser.add_argument("--n", type=int, default=MS1MV2[0])
    parser.add_argument("--identities", type=int, default=MS1MV2[1])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--random-state", "--seed", type=int, default=0)
    parser.add_argument("--sample-rows", type=int, default=20_000,
                        help="Seeded rows searched exactly for the recall and the exact extrapolation.")
    parser.add_argument("--timeout", type=float, default=3600.0, help="Seconds allowed to each step.")
    parser.add_argument("--steps", default="generate,sdd,reference-consensus,cr,cr-exact,big-sdd,"
                                           "big-reference-consensus")
    parser.add_argument("--delete", action="store_true", help="Delete the data set at the end.")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args)
        return
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    params = {"n": args.n, "identities": args.identities, "dim": args.dim, "random_state": args.random_state}
    steps = args.steps.split(",")
    params_file = root / "params.json"
    have = (params_file.exists() and json.loads(params_file.read_text()) == params
            and (root / "generate.measured.json").exists())
    if "generate" in steps and have:
        print("reusing the data set in", root, flush=True)
    if "generate" in steps and not have:
        params_file.unlink(missing_ok=True)
        if measure("generate", args)["exit"] != 0:
            raise SystemExit("generation failed")
        params_file.write_text(json.dumps(params))
    results = {}
    for step in ["generate", *LABEL_STEPS, "cr-exact", "features", "head-epoch", "big-sdd", "big-reference-consensus",
                 "ann"]:
        if step in steps and step != "generate":
            results[step] = measure(step, args)
        elif (root / f"{step}.measured.json").exists():
            results[step] = json.loads((root / f"{step}.measured.json").read_text())
    write_report(results, args)
    if args.delete:
        shutil.rmtree(root)


def write_report(results: dict, args: argparse.Namespace) -> None:
    emit = Report()
    gib = 2**30
    emit(f"# MS1MV2-size labelling run (`benchmarks/bench_ms1m_scale.py --n {args.n}`)")
    emit()
    for line in machine_header()[:2]:  # the load when the report is written says nothing: each row has its own
        emit(line)
    emit("Each step ran in a child process of its own on the shared machine (2 cores; other jobs ran beside it, so "
         "the wall times are upper bounds; CPU time is user + system of the step's process). Peak RSS is the "
         "child's `ru_maxrss` and counts the memory-mapped vector pages it touched. The load average "
         "(1 / 5 / 15 min) at each step's start is in its row.")
    emit()
    generated = results.get("generate", {})
    file_bytes = generated.get("file_bytes", args.n * args.dim * 4)
    emit(f"Data: N = {args.n:,} synthetic unit vectors of d = {args.dim} (float32 `.npy`, "
         f"{file_bytes / 1e9:.1f} GB, memory-mapped read-only), {args.identities:,} identities of skewed sizes "
         f"(min {generated.get('min_size', '?')}, median {generated.get('median_size', '?')}, "
         f"max {generated.get('max_size', '?')}). Goals: sdd and reference-consensus <= 5 min, cr (approximate) "
         f"<= 15 min with recall >= 0.999, peak RSS <= 1.5x the vectors file ({1.5 * file_bytes / gib:.1f} GiB).")
    emit()
    emit("| step | N | wall (s) | CPU (s) | peak RSS (GiB) | RSS / file | load at start | goal | result |")
    emit("|---|---:|---:|---:|---:|---:|---|---|---|")
    exact = results.get("cr-exact", {})
    for step in ["generate", *LABEL_STEPS]:
        if step not in results:
            continue
        r = results[step]
        label = "cr (nearest=\"approximate\")" if step == "cr" else step
        goal = f"<= {GOALS[step] / 60:.0f} min" if step in GOALS else "-"
        note = _status(r)
        if step == "cr" and "recall" in exact:
            note += f"; recall {exact['recall']:.4f} on {exact['rows']:,} sampled rows"
        if step in GOALS and r["exit"] == 0:
            note += (f"; wall {'within' if r['wall'] <= GOALS[step] else 'over'} the goal, peak RSS "
                     f"{'within' if r['maxrss'] <= 1.5 * file_bytes else 'over'} 1.5x the file")
        if "spearman_quality" in r:
            note += f"; Spearman(label, true quality) {r['spearman_quality']:.3f}"
        emit(f"| {label} | {args.n:,} | {r['wall']:.0f} | {r['cpu']:.0f} | {r['maxrss'] / gib:.2f} | "
             f"{r['maxrss'] / file_bytes:.2f} | {r['load']} | {goal} | {note} |")
    if "extrapolated_seconds" in exact:
        emit(f"| cr (nearest=\"exact\"), **extrapolated** | {args.n:,} | {exact['extrapolated_seconds']:.0f} | "
             f"{exact['extrapolated_cpu']:.0f} | - | - | {exact['load']} | - | centres + CCS on all rows measured "
             f"({exact['fixed_seconds']:.0f} s), exact search on {exact['rows']:,} sampled rows "
             f"({exact['search_seconds']:.1f} s) scaled to N |")
    for step in ("features", "head-epoch"):
        if step not in results:
            continue
        r = results[step]
        if step == "features":
            label, goal = "features.npy (N x 1,024 float16)", "-"
            note = f"{_status(r)}; {r.get('file_bytes', 0) / 1e9:.1f} GB written"
        else:
            label, goal = "head epoch on streamed features", "<= 30 min"
            note = _status(r)
            if r["exit"] == 0:
                note += (f"; wall {'within' if r['wall'] <= 1800 else 'over'} the goal; fit {r['fit_seconds']:.0f} s "
                         f"for {r['n_train']:,} rows in {r['steps']:,} steps of {r['batch_size']} + validation on "
                         f"{r['n_validation']:,}; validation Spearman with the labels "
                         f"{r['validation_spearman_labels']:.3f}, with the true quality "
                         f"{r['validation_spearman_quality']:.3f}")
        emit(f"| {label} | {args.n:,} | {r['wall']:.0f} | {r['cpu']:.0f} | {r['maxrss'] / gib:.2f} | "
             f"{r['maxrss'] / file_bytes:.2f} | {r['load']} | {goal} | {note} |")
    emit()
    if "recall" in exact:
        emit(f"Recall of the approximate nearest other centre: {exact['recall']:.5f} ({exact['misses']} misses of "
             f"{exact['rows']:,} seeded rows; largest |approximate - exact| NNCCS {exact['max_abs_error']:.2e}).")
        emit()
    if "cr" in results and "extrapolated_cpu" in exact:
        ops = 2.0 * args.n * args.identities * args.dim
        exact_rate = ops / (exact["search_cpu"] * args.n / exact["rows"]) / 1e9
        screening = results["cr"]["cpu"] - exact["fixed_cpu"]
        emit(f"Where cr's time goes: the nearest-centre search is 2 N C d = {ops:.2e} operations whatever the method. "
             f"The exact search runs them as float32 GEMMs at {exact_rate:.0f} GFLOP per CPU-second; the approximate "
             f"one as uint8 x int8 GEMMs (int32 accumulation) at {ops / screening / 1e9:.0f} GOP per CPU-second, "
             f"its candidate scan and re-rank included ({results['cr']['cpu'] / exact['extrapolated_cpu']:.2f}x the "
             f"exact run's CPU time); the centres and CCS take {exact['fixed_cpu']:.0f} CPU-s. The GEMMs and the "
             f"largest product of each group of 64 centres run in onnxruntime on both cores (one graph), so Python "
             f"only scans the group maxima (64 times fewer numbers) and re-ranks the candidate groups exactly; with "
             f"both cores free the run would take about {screening / 2 + exact['fixed_cpu']:.0f} s. The screening "
             f"graph alone runs at up to about 740 GOP/s on both cores (`benchmarks/results/int8_screen.md`), so "
             f"about {ops / 740e9:.0f} s is this machine's floor for a brute-force int8 search.")
        emit()
    big = [s for s in ("big-sdd", "big-reference-consensus") if s in results]
    if big:
        n_big, n_others, other_size = BIG
        emit(f"## One identity of {n_big:,} samples (beside {n_others} identities of {other_size}; "
             f"{n_big + n_others * other_size:,} x {args.dim} in memory)")
        emit()
        emit(f"The identity's full Gram matrix alone would be {n_big**2 * 4 / 1e9:.0f} GB in float32; both labellers "
             f"work on it in bands of rows (`fiqa.core.comparisons.MAX_GRAM` elements at a time).")
        emit()
        emit("| labeller | wall (s) | CPU (s) | peak RSS (GiB) | load at start | goal | result |")
        emit("|---|---:|---:|---:|---|---|---|")
        for step in big:
            r = results[step]
            verdict = "met" if r["exit"] == 0 and r["maxrss"] <= 2e9 else "missed"
            emit(f"| {step.removeprefix('big-')} | {r['wall']:.0f} | {r['cpu']:.0f} | {r['maxrss'] / gib:.2f} | "
                 f"{r['load']} | <= 2 GB peak | {_status(r)}, {verdict} |")
        emit()
    ann = results.get("ann", {})
    if "indexes" in ann:
        emit(f"## ANN indexes on the same {args.identities:,} centres ({ann['rows']:,} sampled rows, faiss-cpu, "
             f"optional step `ann`)")
        emit()
        emit("| search | build CPU (s) | search CPU (s) | recall of the exact nearest other centre |")
        emit("|---|---:|---:|---:|")
        for row in ann["indexes"]:
            emit(f"| {row['index']} | {row['build_cpu']:.0f} | {row['search_cpu']:.1f} | {row['recall']:.4f} |")
        emit()
        emit("The class-mean centres of this synthetic set have no low-dimensional structure (they are spread over "
             "the sphere), so an index prunes little: the int8-screened brute force of "
             "`nearest=\"approximate\"` is both faster and exact in practice.")
        emit()
    emit.write(results_path("ms1m_scale.md"))


if __name__ == "__main__":
    main()
