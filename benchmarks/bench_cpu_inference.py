"""Faster CPU inference for SFace? Today's float32 path (int8 block weights folded to float32) against int8 (QDQ,
static per-channel weights, onnxruntime's quantiser calibrated on LFW-dev faces), side by side in one run, with the
parity figures that decide whether a faster path may become the default.

Adoption rule (issue "scale"): a path replaces float32 only where every embedding stays within cosine 0.999 of the
float32 one and LFW-dev verification ROC AUC does not drop by more than 0.0005.

- calibration: the first image of the first ``--calibration`` people (sorted by name) with a detected face;
- parity and AUC: the faces of the next people (up to ``--people`` identities with >= 2 photos, at most 6 each);
  AUC over all mated pairs and up to 200,000 non-mated pairs (seeded), the same pairs for every path;
- speed: aligned faces/s at batch 64 (preprocessing included), onnxruntime with ``--threads`` threads, the paths
  interleaved round-robin so machine load affects them alike; medians.

Prints a Markdown table and writes ``benchmarks/results/cpu_inference.md``.

Run: ``.venv/bin/python benchmarks/bench_cpu_inference.py [--lfw ../shared/data/lfw-dev] [--repeats 7]``
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from sklearn.metrics import roc_auc_score

from _common import emit, machine_header, results_path, seconds
from fiqa.core.comparisons import identity_codes, sample_nonmated_pairs
from fiqa.detect import FaceAligner
from fiqa.embed.onnx_runtime import SFACE_SPEC, _folded_model_bytes, session_options
from fiqa.io import read_image
from fiqa.io.model_files import MODEL_FILES, model_path

COSINE_FLOOR, AUC_DROP = 0.999, 0.0005


def faces(lfw: Path, n_calibration: int, n_people: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(calibration crops, evaluation crops, evaluation identities) from LFW-dev, deterministic."""
    aligner = FaceAligner()
    people = sorted(p for p in lfw.iterdir() if p.is_dir())
    calibration, crops, names = [], [], []
    for person in people:
        photos = sorted(person.glob("*.jpg"))
        if len(calibration) < n_calibration:
            crop = aligner.align(read_image(str(photos[0]))).crop
            if crop is not None:
                calibration.append(crop)
            continue
        if len(photos) < 2:
            continue
        for photo in photos[:6]:
            crop = aligner.align(read_image(str(photo))).crop
            if crop is not None:
                crops.append(crop)
                names.append(person.name)
        if len(set(names)) >= n_people:
            break
    return np.stack(calibration), np.stack(crops), np.asarray(names)


class _Reader(CalibrationDataReader):
    def __init__(self, crops: np.ndarray, batch: int = 16) -> None:
        self.tensor, self.batch, self.start = SFACE_SPEC.apply(crops), batch, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.start >= len(self.tensor):
            return None
        self.start += self.batch
        return {"data": self.tensor[self.start - self.batch:self.start]}


def quantised(folder: Path, calibration: np.ndarray, *, exclude_ends: bool) -> bytes:
    """SFace int8 QDQ (per-channel weights, uint8 activations, min-max calibration); with ``exclude_ends`` the
    first convolution and the embedding layer stay float."""
    float_path, prepared, out = folder / "float.onnx", folder / "prepared.onnx", folder / f"int8-{exclude_ends}.onnx"
    float_path.write_bytes(_folded_model_bytes(str(model_path("sface")), MODEL_FILES["sface"].sha256))
    quant_pre_process(str(float_path), str(prepared))
    excluded = ["conv_1_conv2d", "pre_fc1"] if exclude_ends else []
    quantize_static(str(prepared), str(out), _Reader(calibration), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=excluded)
    return out.read_bytes()


def embed(session: ort.InferenceSession, crops: np.ndarray, batch: int = 64) -> np.ndarray:
    parts = [session.run(None, {"data": SFACE_SPEC.apply(crops[i:i + batch])})[0] for i in range(0, len(crops), batch)]
    vectors = np.concatenate(parts).astype(np.float64)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", type=Path, default=Path("../shared/data/lfw-dev"))
    parser.add_argument("--calibration", type=int, default=200)
    parser.add_argument("--people", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    header = machine_header()
    calibration, crops, names = faces(args.lfw, args.calibration, args.people)
    with tempfile.TemporaryDirectory() as tmp:
        graphs = {"float32 (today)": _folded_model_bytes(str(model_path("sface")), MODEL_FILES["sface"].sha256),
                  "int8 QDQ, all layers": quantised(Path(tmp), calibration, exclude_ends=False),
                  "int8 QDQ, first conv and embedding layer float": quantised(Path(tmp), calibration,
                                                                              exclude_ends=True)}
    sessions = {name: ort.InferenceSession(graph, session_options(args.threads), providers=["CPUExecutionProvider"])
                for name, graph in graphs.items()}
    vectors = {name: embed(session, crops) for name, session in sessions.items()}
    codes = identity_codes(names)[1]
    first, second = np.triu_indices(len(codes), k=1)
    mated = codes[first] == codes[second]
    nonmated = sample_nonmated_pairs(codes, 200_000, np.random.default_rng(0))
    pairs = (np.concatenate([first[mated], nonmated[0]]), np.concatenate([second[mated], nonmated[1]]))
    truth = np.concatenate([np.ones(int(mated.sum()), bool), np.zeros(len(nonmated[0]), bool)])
    auc = {name: roc_auc_score(truth, np.einsum("ij,ij->i", v[pairs[0]], v[pairs[1]])) for name, v in vectors.items()}

    batch = crops[:64]
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for session in sessions.values():  # warm-up
        session.run(None, {"data": SFACE_SPEC.apply(batch)})
    for _ in range(args.repeats):
        for name, session in sessions.items():
            times[name].append(seconds(lambda s=session: s.run(None, {"data": SFACE_SPEC.apply(batch)})))
    reference = "float32 (today)"
    lines = ["# CPU inference: SFace float32 against int8", "", *header, "",
             f"{len(calibration)} calibration faces; parity and AUC on {len(crops)} faces of "
             f"{len(set(names))} other LFW-dev people ({int(mated.sum())} mated, {len(nonmated[0]):,} non-mated "
             f"pairs); speed at batch 64, {args.threads} threads, median of {args.repeats} interleaved rounds. "
             f"Adoption rule: cosine to float32 >= {COSINE_FLOOR} for every face and AUC drop <= {AUC_DROP}.", "",
             "| path | faces/s | speed vs float32 | min cosine to float32 | median cosine | ROC AUC | AUC change "
             "| adoptable |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    base_rate = 64 / float(np.median(times[reference]))
    for name in sessions:
        rate = 64 / float(np.median(times[name]))
        cosine = np.sum(vectors[name] * vectors[reference], axis=1)
        change = auc[name] - auc[reference]
        ok = cosine.min() >= COSINE_FLOOR and change >= -AUC_DROP
        lines.append(f"| {name} | {rate:.1f} | x{rate / base_rate:.2f} | {cosine.min():.4f} | "
                     f"{np.median(cosine):.4f} | {auc[name]:.5f} | {change:+.5f} | "
                     f"{'reference' if name == reference else ('yes' if ok else 'no')} |")
    emit("\n".join(lines), results_path("cpu_inference.md"))


if __name__ == "__main__":
    main()
