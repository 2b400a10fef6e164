"""The export gate: does an ONNX quality model give the user the scores its PyTorch model gives?

What a user reads is the calibrated 0-100 ``quality`` (and its order) and the ``raw_score``. ONNX Runtime and PyTorch
compute both in float32 with other kernels (other summation orders, fused BatchNorm, other blockings), so an honest
export differs from PyTorch by rounding, and by no more. :func:`parity_report` bounds that difference for every
checked face from the model's own weights and activations (a first-order running error analysis), and
:func:`check_parity` refuses the file when a face differs by more than its bound:

1. Inputs. A feature head reads the recogniser's features, computed by the separate feature graph
   (:class:`fiqa.embed.features.FeatureExtractor`) for PyTorch and inside the merged graph for ONNX Runtime. The two
   may differ by :data:`FEATURE_SPREAD` times the face's largest feature (a measured spread, see there). A full
   network reads the same preprocessed tensor in both. The head file alone (``head.onnx``) is checked on feature
   vectors both read as the same float32 values (:func:`head_parity_report`, e.g. those a store holds), so no
   input difference is allowed for.
2. Every layer (:func:`raw_error_bound`). A dot product of ``n`` terms (Linear, Conv2d; BatchNorm folded into it
   adds one term) computed twice differs by at most ``2 gamma_{n+1} sum |w_i x_i|`` (:mod:`fiqa.core.numerics`),
   evaluated on this face's activations, plus what the layer does to the difference of its inputs: ``|W| e`` for
   a linear map, ``max(1, |a|) e`` for PReLU, ``|scale| e`` for BatchNorm. Summed through the network this gives a
   bound ``e_raw`` on ``|raw_onnx - raw_torch|`` per face.
3. Calibration (:func:`quality_error_bound`). The map is monotone, so a raw difference of ``e_raw`` moves the
   quality by at most ``Q(raw + e_raw) - Q(raw - e_raw)`` (at most the map's largest slope on that interval times
   ``2 e_raw``), plus the rounding of its own sum of ``K`` ramps (``2 gamma_{K+1}`` of its terms, and ``2 u |r - s_k|``
   per ramp start for ``r - s_k``).

The bounds are worst cases (every rounding error taken with the same sign), so an honest export stays far inside
them; a wrong graph (a changed weight, a missing layer, swapped input channels) moves scores by more, and
tests/test_export.py shows each of the three refused. docs/numerics.md gives measured figures.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn
from torch.nn import functional

from fiqa.core.errors import ModelFileError
from fiqa.core.numerics import U32, gamma
from fiqa.embed.features import FEATURES_NAME, SFACE_TAPS, FeatureExtractor, FeatureSpec
from fiqa.embed.onnx_runtime import inference_session
from fiqa.embed.quality_model import INPUT_NAME, OUTPUT_NAMES
from fiqa.train.models import (
    FEATURE_HEADS,
    CalibratedRegressor,
    MobileFaceNet,
    MobileFaceNetRegressor,
    PiecewiseLinear,
    _Bottleneck,
    _FeatureHead,
)

FEATURE_SPREAD = 2.0**-16
"""Allowed difference between a feature computed by the separate feature graph and inside the merged graph,
relative to the largest feature of the same face (about 1.5e-5, 256 float32 roundoffs).

Measured (docs/numerics.md): 0 (bit-identical) between the two graphs at 1, 2 and all intra-op threads (both run in
ONNX Runtime, whose kernels OpenBLAS settings do not touch); 1.05e-6 between ONNX Runtime's optimisation levels of
the same graph (fused and unfused convolutions, the largest legitimate change of kernels we can provoke on one
machine). The allowance is 15 times that largest measured spread: a chosen safety margin for other CPUs' kernels
(AVX2 against AVX-512), not a measurement of them."""


@dataclass(frozen=True)
class ParityReport:
    """ONNX Runtime's outputs against PyTorch's on the checked faces, with each face's rounding bound.

    Attributes
    ----------
    quality_torch, quality_onnx, quality_bound : ndarray of shape (B,), float64
        Calibrated 0-100 scores and the largest honest ``|onnx - torch|`` per face, in score points.
    raw_torch, raw_onnx, raw_bound : ndarray of shape (B,), float64
        The same for the raw score (training-target units).
    """

    quality_torch: np.ndarray
    quality_onnx: np.ndarray
    quality_bound: np.ndarray
    raw_torch: np.ndarray
    raw_onnx: np.ndarray
    raw_bound: np.ndarray

    @property
    def max_quality_difference(self) -> float:
        """Largest ``|onnx - torch|`` of the calibrated score, in score points."""
        return float(np.max(np.abs(self.quality_onnx - self.quality_torch), initial=0.0))

    @property
    def spearman(self) -> float:
        """Spearman correlation of the two scorings (NaN when either has all faces tied)."""
        if len(self.quality_torch) < 2 or np.ptp(self.quality_torch) == 0 or np.ptp(self.quality_onnx) == 0:
            return float("nan")
        return float(spearmanr(self.quality_torch, self.quality_onnx).statistic)

    def failures(self) -> list[str]:
        """One line per output and face that differs by more than its bound (empty for an honest export)."""
        lines = []
        for name, torch_values, onnx_values, bound in [
                ("quality", self.quality_torch, self.quality_onnx, self.quality_bound),
                ("raw_score", self.raw_torch, self.raw_onnx, self.raw_bound)]:
            over = np.flatnonzero(~(np.abs(onnx_values - torch_values) <= bound))  # NaN counts as over
            lines += [f"{name} of face {i}: ONNX Runtime {onnx_values[i]:.6g}, PyTorch {torch_values[i]:.6g} "
                      f"(difference {abs(onnx_values[i] - torch_values[i]):.3g}, rounding allows {bound[i]:.3g})"
                      for i in over[:3]]
        return lines


def _local_bound(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
    """Bound on the difference of two float32 evaluations of one layer on the same input ``x`` (output ``y``),
    elementwise, float64; None for a layer that computes exactly (dropout in eval mode, reshapes)."""
    x, y = x.detach().double(), y.detach().double()
    if isinstance(module, nn.Linear | nn.Conv2d):
        weight = module.weight.detach().double().abs()
        if isinstance(module, nn.Linear):
            magnitude = functional.linear(x.abs(), weight)
        else:
            magnitude = functional.conv2d(x.abs(), weight, None, module.stride, module.padding, module.dilation,
                                          module.groups)
        n = weight[0].numel() + (module.bias is not None)
        if module.bias is not None:
            magnitude = magnitude + _channel_view(module.bias.detach().double().abs(), magnitude)
        # one more term than the dot product: BatchNorm folded into the weights rounds each of them once
        return 2 * float(gamma(n + 1)) * magnitude
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return _batch_norm_bound(module, x)
    if isinstance(module, nn.PReLU):  # one product on the negative side
        return 2 * U32 * y.abs()
    if isinstance(module, nn.Dropout | nn.Identity | nn.Flatten):
        return None
    if isinstance(module, _Bottleneck):  # the residual sum; its layers are bounded on their own
        return 2 * U32 * y.abs() if module.residual else None
    if isinstance(module, _FeatureHead):  # the norm path's sum; index_select and squeeze are exact
        return 2 * U32 * y.abs() if module.norm_path else None
    if isinstance(module, nn.Sequential | MobileFaceNet | MobileFaceNetRegressor):
        return None  # containers: their layers are bounded on their own
    raise NotImplementedError(f"no rounding bound for a {type(module).__name__} layer")


def _channel_view(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-channel vector (C,) shaped to broadcast over ``like`` (B, C) or (B, C, H, W)."""
    return values.view(1, -1, *([1] * (like.dim() - 2)))


def _batch_norm_bound(norm: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
    """``y = s x + t`` with ``s = gamma / sqrt(var + eps)``, ``t = beta - mean s`` (eval mode), as PyTorch folds
    it, or ``(x - mean) s + beta`` as ONNX Runtime computes it: each rounds every term at most 7 times (``var +
    eps``, the square root, the division, the product with ``gamma``; then ``mean s`` and the subtraction, or
    ``x - mean``; then the product and the sum), on magnitudes up to ``|s| (|x| + |mean|) + |beta|`` (the two forms
    cancel differently, so the bound covers the terms before cancelling), in each of two implementations."""
    assert norm.running_var is not None and norm.running_mean is not None  # track_running_stats is on
    scale = norm.running_var.detach().double().add(norm.eps).rsqrt()
    if norm.weight is not None:
        scale = scale * norm.weight.detach().double()
    mean = norm.running_mean.detach().double().abs()
    beta = norm.bias.detach().double().abs() if norm.bias is not None else torch.zeros_like(mean)
    return 2 * float(gamma(7)) * (_channel_view(scale.abs(), x) * (x.abs() + _channel_view(mean, x))
                                  + _channel_view(beta, x))


def raw_error_bound(regressor: nn.Module, inputs: torch.Tensor, input_error: torch.Tensor) -> np.ndarray:
    """Largest difference of the raw score between two float32 evaluations of ``regressor`` (eval mode) whose
    inputs differ by at most ``input_error``, to first order in the unit roundoff.

    Each layer's own rounding (:func:`_local_bound`) reaches the raw score through the network's derivative at
    this face: the bound is ``sum over layers of |d raw / d y_layer| . local_bound`` plus
    ``|d raw / d input| . input_error`` (first-order running error analysis; the derivatives are those of the
    actual face, so no cancellation is assumed away and none is counted twice). A full network also rounds its
    input normalisation ``(x - 127.5) / 128`` (two operations on values up to 255).

    Parameters
    ----------
    regressor : nn.Module
        A feature head or :class:`MobileFaceNetRegressor` (other layers raise NotImplementedError).
    inputs : tensor of shape (B, dim) or (B, 3, 112, 112), float32
    input_error : tensor of the shape of ``inputs``, float64, >= 0

    Returns
    -------
    ndarray of shape (B,), float64
    """
    outputs: list[tuple[torch.Tensor, torch.Tensor]] = []

    def record(module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        local = _local_bound(module, args[0], output)
        if local is not None:
            output.retain_grad()
            outputs.append((output, local))

    handles = [module.register_forward_hook(record) for module in regressor.modules()]
    try:
        with torch.enable_grad():
            x = inputs.detach().float().requires_grad_(True)
            regressor(x).sum().backward()  # eval mode: faces are independent, so each gets its own derivative
    finally:
        for handle in handles:
            handle.remove()
        regressor.zero_grad(set_to_none=True)
    assert x.grad is not None
    gradient = x.grad.double().abs()
    bound = (gradient * input_error).reshape(len(inputs), -1).sum(1)
    if isinstance(regressor, MobileFaceNetRegressor):
        bound = bound + (gradient * 4 * U32 * (inputs.double().abs() + 127.5)).reshape(len(inputs), -1).sum(1)
    for output, local in outputs:
        assert output.grad is not None
        bound = bound + (output.grad.double().abs() * local).reshape(len(inputs), -1).sum(1)
    return bound.numpy()


def quality_error_bound(calibration: PiecewiseLinear, raw: np.ndarray, raw_bound: np.ndarray) -> np.ndarray:
    """Largest difference of the calibrated score between two float32 evaluations of ``calibration`` whose raw
    inputs are ``raw`` and something within ``raw_bound`` of it (see the module docstring, step 3).

    Returns
    -------
    ndarray of shape (B,), float64, in score points
    """
    starts, widths, slopes = (b.double().numpy() for b in (calibration.starts, calibration.widths,
                                                           calibration.slopes))

    def exact(values: np.ndarray) -> np.ndarray:
        return calibration.base + (np.clip(values[:, None] - starts, 0.0, widths) * slopes).sum(axis=1)

    moved = exact(raw + raw_bound) - exact(raw - raw_bound)
    terms = np.clip(raw[:, None] - starts, 0.0, widths) * np.abs(slopes)
    subtraction = U32 * (np.abs(raw[:, None]) + np.abs(starts)) * np.abs(slopes)
    own = gamma(len(starts) + 1) * (abs(calibration.base) + terms.sum(axis=1)) + subtraction.sum(axis=1)
    return moved + 2 * own


def _report(model: CalibratedRegressor, path: str | Path, torch_input: torch.Tensor, input_error: torch.Tensor,
            onnx_inputs: dict[str, np.ndarray]) -> ParityReport:
    """PyTorch's outputs on ``torch_input`` with their per-face bounds against ONNX Runtime's on ``onnx_inputs``."""
    quality_torch, raw_torch = (t.double().numpy() for t in model(torch_input))
    raw_bound = raw_error_bound(model.regressor, torch_input, input_error)
    quality_bound = quality_error_bound(model.calibrate, raw_torch, raw_bound)
    try:
        session = inference_session(str(path))
        quality_onnx, raw_onnx = session.run(list(OUTPUT_NAMES), onnx_inputs)
    except Exception as exc:  # onnxruntime raises several private exception types
        raise ModelFileError(f"{path}: ONNX Runtime cannot run the exported model ({exc})") from None
    return ParityReport(quality_torch, np.asarray(quality_onnx, np.float64).reshape(-1), quality_bound,
                        raw_torch, np.asarray(raw_onnx, np.float64).reshape(-1), raw_bound)


@torch.no_grad()
def parity_report(model: CalibratedRegressor, path: str | Path, crops: np.ndarray, *, shape: str,
                  spec: FeatureSpec = SFACE_TAPS) -> ParityReport:
    """ONNX Runtime's (quality, raw_score) from the file at ``path`` against PyTorch's, on ``crops``.

    Parameters
    ----------
    model : CalibratedRegressor
    path : path
        The exported ONNX file (input ``data``: the preprocessed crops).
    crops : ndarray of shape (B, 112, 112, 3), uint8 BGR
    shape : str
        The regressor shape; a feature head reads ``spec``'s features (computed by the separate feature graph).
    spec : FeatureSpec

    Returns
    -------
    ParityReport
    """
    model.eval()
    tensor = spec.spec.apply(crops)
    torch_input = torch.from_numpy(FeatureExtractor(spec)(crops) if shape in FEATURE_HEADS else tensor)
    if shape in FEATURE_HEADS:  # the merged graph's features may differ by FEATURE_SPREAD of the largest one
        largest = torch_input.double().abs().amax(dim=1, keepdim=True)
        input_error = (FEATURE_SPREAD * largest).expand(torch_input.shape)
    else:
        input_error = torch.zeros(torch_input.shape, dtype=torch.float64)
    return _report(model, path, torch_input, input_error, {INPUT_NAME: tensor})


@torch.no_grad()
def head_parity_report(model: CalibratedRegressor, path: str | Path, features: np.ndarray) -> ParityReport:
    """ONNX Runtime's (quality, raw_score) from a head file (``head.onnx``, input ``features``) against PyTorch's,
    on feature vectors (e.g. those a store holds): both read the same float32 values, so only the layers' own
    rounding is allowed for.

    Parameters
    ----------
    model : CalibratedRegressor
        A feature head with its calibration.
    path : path
        The exported head file.
    features : ndarray of shape (B, spec.dim)
        The recogniser's feature vectors (float16 values are read as float32 by both).

    Returns
    -------
    ParityReport
    """
    model.eval()
    values = np.ascontiguousarray(features, np.float32)
    torch_input = torch.from_numpy(values)
    return _report(model, path, torch_input, torch.zeros(torch_input.shape, dtype=torch.float64),
                   {FEATURES_NAME: values})


def _refuse_failures(report: ParityReport, path: str | Path, n_faces: int, what: str) -> ParityReport:
    failures = report.failures()
    if failures:
        raise ModelFileError(
            f"{path}: ONNX Runtime's scores differ from PyTorch's by more than float32 rounding allows, so the "
            f"exported graph does not compute the trained model (largest quality difference "
            f"{report.max_quality_difference:.3g} points, Spearman {report.spearman:.4f} on {n_faces} {what}): "
            + "; ".join(failures))
    return report


def check_parity(model: CalibratedRegressor, path: str | Path, crops: np.ndarray, *, shape: str,
                 spec: FeatureSpec = SFACE_TAPS) -> ParityReport:
    """:func:`parity_report`, raising ``ModelFileError`` (naming ``path``) when any face differs by more than
    rounding allows."""
    return _refuse_failures(parity_report(model, path, crops, shape=shape, spec=spec), path, len(crops), "faces")


def check_head_parity(model: CalibratedRegressor, path: str | Path, features: np.ndarray) -> ParityReport:
    """:func:`head_parity_report`, raising ``ModelFileError`` (naming ``path``) when any face differs by more than
    rounding allows."""
    return _refuse_failures(head_parity_report(model, path, features), path, len(features), "faces' features")


def synthetic_crops(n: int = 4, random_state: int = 0) -> np.ndarray:
    """``n`` seeded crops of uniform noise, shape (n, 112, 112, 3), uint8: inputs that need no image, for checking
    that a merged graph computes its head on its recogniser's features (what a face looks like does not enter the
    rounding bound, which is evaluated on the activations of whatever is fed in)."""
    return np.random.default_rng(random_state).integers(0, 256, size=(n, 112, 112, 3), dtype=np.uint8)
