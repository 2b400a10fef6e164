"""How much of its labels' gain over the embedding norm can a single-image model keep on LFW-dev?

    python -m studies.study_single_image --demo runs/demo --out runs/single-image

Reuses a finished ``fiqa demo`` folder (its SFace store, ``split.json`` and, for part 1, the scores of its two
models on the held-apart half). Writes ``studies/results/single_image.md``. About 30 min on 2 cores.

1. **Cross-fitted labels.** The reference-consensus labels of the EDC tables are computed from the very comparisons
   that EDC then counts. Here every identity with >= 4 photos is split in two at random (seeded); each photo is
   labelled from the photos of its own half only, and EDC counts only the mated pairs across the halves. If the
   cross-fitted labels still stay far below the norm, the failing photos fail against *every* other photo of their
   person: their defect belongs to the photo, seen through its identity, and not to one unlucky pair.
2. **Single-image recipes, out of fold on training identities.** The training half gets ``--copies`` augmented
   copies per face (``fiqa.augment.copies``; embedded and labelled with the originals) and a degraded evaluation copy
   of each face (``fiqa.augment.degraded_store``: effects no training recipe draws). Each recipe is fitted 4 times on
   3/4 of the training identities' faces and copies, and scores the other quarter's natural and degraded faces.
   The held-apart half is not touched in part 2. The recipes cover what the issue listed and what the literature
   uses:

   - free signals: the norm; the cosine to the centre of the worst-labelled 5 % of training copies (the
     "unrecognisable identity" centre of Chai et al., CVPR 2023); the labels of the 20 nearest training copies;
   - regressions on the embedding and its log norm (ridge, gradient boosting);
   - regressions on every SFace stage's mean and spread (``taps``): ridge, and gradient boosting on a target that
     keeps only the ordering of the lowest 30 % (what a pAUC to 20 % discard counts);
   - heads on SFace's last stage: pooled (the shipped head's input), spatial (16 channels x 7 x 7), and pooled with
     the last SFace block (``conv_14``: depthwise 3x3 and pointwise 1024 -> 1024, with their PReLUs) fine-tuned from
     SFace's own weights; the pooled head z-averaged with the norm.

``gain = (pAUC_norm - pAUC) / (pAUC_norm - pAUC_labels)``; FNMR pAUC at FMR 1e-3 to 20 % discard, comparisons as in
the demo (``max_mated_per_identity=50``).
"""
from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import torch
from benchmarks._common import emit, machine_header, results_path
from onnx import TensorProto, helper, numpy_helper
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import Ridge
from sklearn.preprocessing import StandardScaler
from torch import nn

from fiqa.augment.copies import augment_store, degraded_store
from fiqa.augment.crops import load_crops
from fiqa.core.types import EmbeddingStore, QualityTable, Status
from fiqa.embed.graph import fold_constants
from fiqa.embed.onnx_runtime import inference_session
from fiqa.evaluate import evaluate_quality, load_split, sample_comparisons
from fiqa.io.model_files import model_path
from fiqa.io.table import load_quality, save_quality
from fiqa.label import create_labeler, label_store
from fiqa.store import is_store, open_store
from fiqa.train.features import cached_features

LABELLER = "reference-consensus"
RESULTS = Path(__file__).resolve().parent / "results"
FOLDS = 4
MAP = (1024, 7, 7)  # SFace's conv_13 output, the last block's input


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _table(store: EmbeddingStore, rows: np.ndarray, score: np.ndarray, name: str) -> QualityTable:
    return QualityTable(store.samples.sample_id[rows], np.asarray(score, np.float64),
                        np.full(len(rows), Status.OK.value, object), np.full(len(rows), "", object), {},
                        {"method": name})


def _renamed(table: QualityTable, name: str) -> QualityTable:
    return QualityTable(table.sample_id, table.score, table.status, table.reason, {}, {"method": name})


def _edc(store: EmbeddingStore, mask: np.ndarray, tables: list[QualityTable], *, n_bootstrap: int = 0,
         keep: Callable | None = None) -> dict[str, dict]:
    comparisons = sample_comparisons(store, n_nonmated=1_000_000, random_state=0, sample_mask=mask,
                                     max_mated_per_identity=50)
    if keep is not None:
        comparisons = comparisons.subset(keep(comparisons))
    evaluation = evaluate_quality(comparisons, tables, random_state=0, legacy_erc=False, n_bootstrap=n_bootstrap,
                                  identities=store.samples)
    rows = {row["method"]: row for row in evaluation.edc.table()}
    rows["_n_mated"] = {"fnmr_pauc": int(comparisons.mated.sum())}
    return rows


# 1. cross-fitted labels ----------------------------------------------------------------------------------------------

def crossfit(store: EmbeddingStore, rows: np.ndarray, model_scores: list[QualityTable]) -> dict[str, dict]:
    """EDC on the mated pairs across two seeded halves of every identity, with labels fitted within each half."""
    identity = store.samples.identity.astype(str)
    side = np.full(len(store), -1)
    rng = np.random.default_rng(7)
    for name in np.unique(identity[rows]):
        own = rows[identity[rows] == name]
        if len(own) >= 4:
            order = rng.permutation(own)
            side[order[:len(own) // 2]], side[order[len(own) // 2:]] = 0, 1
    kept = rows[side[rows] >= 0]
    halves = [label_store(store, create_labeler(LABELLER, random_state=0), rows=kept[side[kept] == h])
              for h in (0, 1)]
    score = np.concatenate([t.score for t in halves])
    ids = np.concatenate([t.sample_id for t in halves])
    done = ~np.isnan(score)
    crossed = QualityTable(ids[done], score[done], np.full(done.sum(), Status.OK.value, object),
                           np.full(done.sum(), "", object), {}, {"method": "labels, cross-fitted"})
    in_sample = _renamed(label_store(store, create_labeler(LABELLER, random_state=0), rows=rows),
                         "labels, in-sample")
    norm = _table(store, rows, np.asarray(store.norms, np.float64)[rows], "norm")
    mask = np.zeros(len(store), bool)
    mask[kept] = True
    by_id = np.argsort(store.samples.sample_id)

    def side_of(sample_id: np.ndarray) -> np.ndarray:
        return side[by_id[np.searchsorted(store.samples.sample_id[by_id], sample_id)]]

    def across(comparisons) -> np.ndarray:
        keep = ~comparisons.mated
        mated = np.flatnonzero(comparisons.mated)
        keep[mated] = side_of(comparisons.sample_a[mated]) != side_of(comparisons.sample_b[mated])
        return keep
    return _edc(store, mask, [crossed, in_sample, norm, *model_scores], n_bootstrap=1000, keep=across)


# 2. single-image recipes ----------------------------------------------------------------------------------------------

@functools.cache
def _sface() -> onnx.ModelProto:
    """SFace with its weights dequantised (:func:`fiqa.embed.graph.fold_constants`), read once."""
    return fold_constants(onnx.load(model_path("sface")))


@functools.cache
def _maps_session():
    graph = onnx.ModelProto()
    graph.CopyFrom(_sface())
    graph.graph.output.append(helper.make_tensor_value_info("conv_13_relu", TensorProto.FLOAT, None))
    return inference_session(graph.SerializeToString())


def _maps(store: EmbeddingStore, rows: np.ndarray) -> np.ndarray:
    """SFace's conv_13 output (float16) of ``rows``, from crops re-made from the source images."""
    session = _maps_session()
    out = np.zeros((len(rows), *MAP), np.float16)
    for start in range(0, len(rows), 64):
        crops = load_crops(store, rows[start:start + 64])  # BGR; SFace takes RGB 0-255
        x = np.ascontiguousarray(crops[..., ::-1].transpose(0, 3, 1, 2), np.float32)
        out[start:start + 64] = session.run(["conv_13_relu"], {session.get_inputs()[0].name: x})[0]
    return out


class _LastBlock(nn.Module):
    """SFace's conv_14 block and embedding layer in torch, with SFace's weights (eval-mode batch norms)."""

    def __init__(self) -> None:
        super().__init__()
        weights = {init.name: torch.tensor(numpy_helper.to_array(init)).float()
                   for init in _sface().graph.initializer}

        def norm(prefix: str, eps: float, one_d: bool = False) -> nn.Module:
            layer = (nn.BatchNorm1d if one_d else nn.BatchNorm2d)(len(weights[f"{prefix}_gamma"]), eps=eps)
            layer.weight.data, layer.bias.data = weights[f"{prefix}_gamma"], weights[f"{prefix}_beta"]
            layer.running_mean, layer.running_var = weights[f"{prefix}_moving_mean"], weights[f"{prefix}_moving_var"]
            return layer

        def prelu(name: str) -> nn.PReLU:
            layer = nn.PReLU(MAP[0])
            layer.weight.data = weights[f"{name}/slope"].reshape(-1)
            return layer
        depthwise = nn.Conv2d(MAP[0], MAP[0], 3, padding=1, groups=MAP[0], bias=False)
        depthwise.weight.data = weights["conv_14_dw_conv2d_weight_reshaped"]
        pointwise = nn.Conv2d(MAP[0], MAP[0], 1, bias=False)
        pointwise.weight.data = weights["conv_14_conv2d_weight_reshaped"]
        self.block = nn.Sequential(depthwise, norm("conv_14_dw_batchnorm", 1e-3), prelu("conv_14_dw_relu"),
                                   pointwise, norm("conv_14_batchnorm", 1e-3), prelu("conv_14_relu"))
        fc = nn.Linear(int(np.prod(MAP)), 128)
        fc.weight.data, fc.bias.data = weights["pre_fc1_weight_dequantized"], weights["pre_fc1_bias_dequantized"]
        self.embedding = nn.Sequential(norm("bn1", 2e-5), nn.Flatten(), fc, norm("fc1", 2e-5, one_d=True))

    def forward(self, maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        stage = self.block(maps)
        return stage, torch.log(self.embedding(stage).norm(dim=1, keepdim=True))


class _Head(nn.Module):
    """Quality from the last stage (pooled, or 16 channels kept at every position) and the log norm."""

    def __init__(self, spatial: bool) -> None:
        super().__init__()
        self.reduce = (nn.Sequential(nn.Conv2d(MAP[0], 16, 1), nn.BatchNorm2d(16), nn.PReLU(16), nn.Flatten())
                       if spatial else None)
        width = 16 * MAP[1] * MAP[2] if spatial else MAP[0]
        self.mlp = nn.Sequential(nn.BatchNorm1d(width + 1), nn.Dropout(0.5), nn.Linear(width + 1, 128), nn.PReLU(),
                                 nn.Linear(128, 1))

    def forward(self, stage: torch.Tensor, log_norm: torch.Tensor) -> torch.Tensor:
        pooled = self.reduce(stage) if self.reduce is not None else stage.mean((2, 3))
        return self.mlp(torch.cat([pooled, log_norm], 1)).squeeze(1)


def _fit_head(train: tuple[np.ndarray, ...], y: np.ndarray, evaluate: list[tuple[np.ndarray, ...]], *,
              spatial: bool, fine_tune: bool, epochs: int) -> list[np.ndarray]:
    """Huber regression of standardised labels. Inputs are ``(maps,)`` (SFace's conv_13 output) when the last block
    is fine-tuned, at a tenth of the head's learning rate with its batch norms kept at SFace's statistics; else
    ``(stage, log_norm)``, the frozen block's outputs (:func:`_stage_outputs`)."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    # the block is built in both modes: it draws from torch's generator first, so both heads start alike
    block, head = _LastBlock().eval(), _Head(spatial)
    for parameter in block.parameters():
        parameter.requires_grad = fine_tune
    groups = [{"params": head.parameters(), "lr": 1e-3}]
    if fine_tune:
        groups.append({"params": block.parameters(), "lr": 1e-4})
    optimiser = torch.optim.AdamW(groups, weight_decay=1e-4)
    target = torch.tensor((y - y.mean()) / y.std()).float()

    def forward(inputs: tuple[np.ndarray, ...], index: np.ndarray) -> torch.Tensor:
        tensors = [torch.from_numpy(values[index].astype(np.float32)) for values in inputs]
        return head(*block(*tensors)) if fine_tune else head(*tensors)
    for _ in range(epochs):
        head.train()
        for batch in np.array_split(rng.permutation(len(y)), max(1, len(y) // 64)):
            batch = np.sort(batch)
            loss = nn.functional.huber_loss(forward(train, batch), target[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    head.eval()
    with torch.no_grad():
        return [np.concatenate([forward(inputs, np.arange(s, min(s + 256, len(inputs[0])))).numpy()
                                for s in range(0, len(inputs[0]), 256)]) for inputs in evaluate]


def _stage_outputs(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    block = _LastBlock().eval()
    stage = np.zeros(maps.shape, np.float16)
    log_norm = np.zeros((len(maps), 1), np.float32)
    with torch.no_grad():
        for s in range(0, len(maps), 256):
            out, norm = block(torch.from_numpy(maps[s:s + 256].astype(np.float32)))
            stage[s:s + 256], log_norm[s:s + 256] = out.numpy(), norm.numpy()
    return stage, log_norm


def _z(values: np.ndarray) -> np.ndarray:
    return (values - values.mean()) / values.std()


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, np.float64)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _bottom(y: np.ndarray, share: float = 0.3) -> np.ndarray:
    """Rank in [0, 1], clipped at ``share``: only the ordering of the lowest labels counts."""
    return np.minimum(np.argsort(np.argsort(y)) / (len(y) - 1), share)


def _free_and_linear(train: dict, evaluate: list[dict]) -> dict[str, list[np.ndarray]]:
    """Recipes on the embedding, its norm and the taps (``train``/``evaluate``: ``unit``, ``log_norm``, ``taps``)."""
    y = train["y"]
    worst = train["unit"][y <= np.quantile(y, 0.05)].mean(0)
    worst /= np.linalg.norm(worst)
    out: dict[str, list[np.ndarray]] = {"norm": [e["log_norm"] for e in evaluate],
                                        "cosine to the worst copies' centre (negated)":
                                            [-(e["unit"] @ worst) for e in evaluate]}
    knn = []
    for e in evaluate:
        similar = np.argpartition(-(e["unit"] @ train["unit"].T), 20, axis=1)[:, :20]
        knn.append(y[similar].mean(1))
    out["labels of the 20 nearest copies"] = knn
    embedded = np.column_stack([train["unit"], train["log_norm"]])
    inputs = [np.column_stack([e["unit"], e["log_norm"]]) for e in evaluate]
    model = Ridge(alpha=1.0).fit(embedded, y)
    out["ridge on embedding + log norm"] = [model.predict(x) for x in inputs]
    boost = HistGradientBoostingRegressor(max_iter=300, random_state=0).fit(embedded, y)
    out["gradient boosting on embedding + log norm"] = [boost.predict(x) for x in inputs]
    scaler = StandardScaler().fit(train["taps"])
    taps = scaler.transform(train["taps"])
    model = Ridge(alpha=100.0).fit(taps, y)
    out["ridge on taps"] = [model.predict(scaler.transform(e["taps"])) for e in evaluate]
    boost = HistGradientBoostingRegressor(max_iter=200, learning_rate=0.05, random_state=0).fit(taps, _bottom(y))
    out["gradient boosting on taps, lowest 30 % only"] = [boost.predict(scaler.transform(e["taps"])) for e in evaluate]
    return out


def _inputs(store: EmbeddingStore, rows: np.ndarray, cache: Path) -> dict[str, np.ndarray]:
    log_norm = np.log(np.asarray(store.norms, np.float64)[rows])
    taps = np.asarray(cached_features(store, rows, cache_dir=cache, progress=False)[rows], np.float32)
    return {"unit": _unit(store.vectors[rows]), "log_norm": log_norm,
            "taps": np.column_stack([taps, log_norm]), "maps": _maps(store, rows)}


def recipes(args: argparse.Namespace, store: EmbeddingStore, split) -> tuple[dict, dict]:
    """Out-of-fold pAUCs of every recipe on the training half's natural and degraded faces."""
    out = args.out
    identity = store.samples.identity.astype(str)
    train_rows = np.flatnonzero(store.ok & split.mask(identity, "train"))
    _log("augmenting and degrading the training half")
    if not is_store(out / "augmented"):
        augment_store(store, out / "augmented", copies=args.copies, random_state=0, rows=train_rows, progress=False)
    if not is_store(out / "degraded"):
        degraded_store(store, out / "degraded", rows=train_rows, random_state=101, progress=False)
    augmented, degraded = open_store(out / "augmented"), open_store(out / "degraded")
    _log("labels")
    labels = {}
    for name, source in [("augmented", augmented), ("natural", store), ("degraded", degraded)]:
        path = out / f"labels-{name}.parquet"
        if not path.exists():
            rows = np.flatnonzero(source.ok & split.mask(source.samples.identity.astype(str), "train"))
            save_quality(label_store(source, create_labeler(LABELLER, random_state=0), rows=rows), path)
        labels[name] = load_quality(path)
    label_of = dict(zip(labels["augmented"].sample_id.tolist(), labels["augmented"].score.tolist()))
    y_all = np.array([label_of.get(int(s), np.nan) for s in augmented.samples.sample_id])
    sets = {"augmented": (augmented, np.flatnonzero(augmented.ok & ~np.isnan(y_all))), "natural": (store, train_rows),
            "degraded": (degraded, np.flatnonzero(degraded.ok & split.mask(degraded.samples.identity.astype(str),
                                                                              "train")))}
    _log("inputs: embeddings, taps, SFace conv_13 maps")
    data = {name: {**_inputs(source, rows, out / "features"), "identity":
                   source.samples.identity.astype(str)[rows]} for name, (source, rows) in sets.items()}
    data["augmented"]["y"] = y_all[sets["augmented"][1]]
    for part in data.values():
        part["stage"], part["stage_log_norm"] = _stage_outputs(part["maps"])
    names = np.unique(data["natural"]["identity"])
    fold_of = dict(zip(np.random.default_rng(12345).permutation(names), np.arange(len(names)) % FOLDS))
    scores: dict[str, dict[str, np.ndarray]] = {}
    for fold in range(FOLDS):
        held = [name for name, f in fold_of.items() if f == fold]
        fit = ~np.isin(data["augmented"]["identity"], held)
        train = {key: value[fit] for key, value in data["augmented"].items()}
        index = {name: np.flatnonzero(np.isin(data[name]["identity"], held)) for name in ("natural", "degraded")}
        evaluate = [{key: value[index[name]] for key, value in data[name].items()} for name in ("natural", "degraded")]
        fold_scores = _free_and_linear(train, evaluate)
        for label, spatial, fine_tune in [("head on the pooled last stage", False, False),
                                          ("head on the spatial last stage", True, False),
                                          ("last SFace block fine-tuned + pooled head", False, True)]:
            keys = ("maps",) if fine_tune else ("stage", "stage_log_norm")
            started = time.perf_counter()
            fold_scores[label] = _fit_head(tuple(train[k] for k in keys), train["y"],
                                           [tuple(e[k] for k in keys) for e in evaluate], spatial=spatial,
                                           fine_tune=fine_tune, epochs=args.fine_tune_epochs if fine_tune else 20)
            _log(f"fold {fold}: {label} {time.perf_counter() - started:.0f} s")
        fold_scores["pooled head + norm, z-averaged"] = [
            _z(head) + _z(norm)
            for head, norm in zip(fold_scores["head on the pooled last stage"], fold_scores["norm"])]
        for which, name in enumerate(("natural", "degraded")):
            for label, values in fold_scores.items():
                scores.setdefault(name, {}).setdefault(label, np.zeros(len(data[name]["identity"])))
                scores[name][label][index[name]] = values[which]
    results = {}
    for name in ("natural", "degraded"):
        source, rows = sets[name]
        mask = np.zeros(len(source), bool)
        mask[rows] = True
        tables = [_table(source, rows, values, label) for label, values in scores[name].items()]
        results[name] = _edc(source, mask, [*tables, _renamed(labels[name], "labels")])
    return results, {"n_augmented": len(sets["augmented"][1]), "n_natural": len(train_rows)}


def _gain(rows: dict, method: str, labels: str) -> float:
    norm = rows["norm"]["fnmr_pauc"]
    return (norm - rows[method]["fnmr_pauc"]) / (norm - rows[labels]["fnmr_pauc"])


def _report(args: argparse.Namespace, cross: dict[str, dict], oof: dict[str, dict], counts: dict,
            minutes: float) -> str:
    lines = ["# A single image against its labels: cross-fitted labels and single-image recipes", "",
             *machine_header(), "",
             f"Command: `python -m studies.study_single_image --demo {args.demo} --out {args.out}` "
             f"({minutes:.1f} min). "
             f"Labeller `{LABELLER}`; FNMR pAUC at FMR 1e-3, discard <= 0.20; "
             "gain = (norm - method) / (norm - labels).", "",
             "## 1. Cross-fitted labels (each photo labelled from its own half of its person's photos)", "",
             "| half | mated pairs across halves | method | pAUC [95% CI] "
             "| gain over the norm, of the in-sample labels' |",
             "|---|---:|---|---:|---:|"]
    for half, rows in cross.items():
        for method, row in rows.items():
            if method.startswith("_"):
                continue
            lines.append(f"| {half} | {rows['_n_mated']['fnmr_pauc']} | {method} | {row['fnmr_pauc']:.3g} "
                         f"[{row['pauc_ci_low']:.3g}, {row['pauc_ci_high']:.3g}] | "
                         f"{_gain(rows, method, 'labels, in-sample'):+.2f} |")
    lines += ["", f"## 2. Single-image recipes, out of fold on the training half ({FOLDS} identity folds; "
              f"{counts['n_augmented']} faces and copies to fit, {counts['n_natural']} natural faces scored)", "",
              "| recipe | natural pAUC | natural gain | degraded pAUC | degraded gain |", "|---|---:|---:|---:|---:|"]
    natural, degraded = oof["natural"], oof["degraded"]
    order = sorted((m for m in natural if not m.startswith("_") and m not in ("labels", "random")),
                   key=lambda m: -(_gain(natural, m, "labels") + _gain(degraded, m, "labels")))
    for method in [*order, "labels", "random"]:
        lines.append(f"| {method} | {natural[method]['fnmr_pauc']:.3g} | {_gain(natural, method, 'labels'):+.2f} | "
                     f"{degraded[method]['fnmr_pauc']:.3g} | {_gain(degraded, method, 'labels'):+.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--fine-tune-epochs", type=int, default=5)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    store = open_store(args.demo / "store")
    split = load_split(args.demo / "split.json")
    identity = store.samples.identity.astype(str)
    _log("cross-fitted labels")
    cross = {}
    for half in ("train", "test"):
        models = [_renamed(load_quality(path), path.name.split(".")[0])
                  for path in sorted((args.demo / "scores").glob(f"*.{half}.parquet"))]
        cross[half] = crossfit(store, np.flatnonzero(store.ok & split.mask(identity, half)), models)
    oof, counts = recipes(args, store, split)
    emit(_report(args, cross, oof, counts, (time.perf_counter() - started) / 60),
         results_path("single_image.md", RESULTS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
