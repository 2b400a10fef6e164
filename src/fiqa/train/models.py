"""The two regressor shapes and the in-model calibration layer (PyTorch).

- ``"head"`` (default): :class:`QualityHead`, a small network on the last stage of a frozen recogniser (SFace's
  1024 x 7 x 7 map averaged over its positions), in SDD-FIQA's spirit, read from the recogniser's quality features
  (:mod:`fiqa.embed.features`), computed once per store and cached (:mod:`fiqa.train.features`).
- ``"taps"``: :class:`TapsHead`, the same network on every stage's mean and spread, the raw embedding, and a linear
  path on its log norm. Measured beside ``"head"`` in ``studies/study_quality_model.py``.
- ``"mobilefacenet"``: :class:`MobileFaceNetRegressor`, a full network on aligned 112x112 crops (Chen et al.,
  2018), trained from scratch or from a user's backbone checkpoint; meant for GPUs and ``torchrun``.

Every model maps its input to one raw score per sample, on the 0-100 training-target scale.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from fiqa.core.errors import InvalidParameterError, ModelFileError
from fiqa.core.params import InstanceOf, Interval, Param, PathLike, validate
from fiqa.core.registry import Registry
from fiqa.embed.features import SFACE_TAPS, FeatureSpec
from fiqa.train.calibration import QuantileCalibration

REGRESSORS: Registry[nn.Module] = Registry("regressor shape")

_HIDDEN = Param(128, [Interval(int, 1, None, closed="left")], "Hidden units of the MLP.")
_DROPOUT = Param(0.5, [Interval(float, 0, 1, closed="left")], "Dropout before the MLP.")
_SPEC = Param(SFACE_TAPS, [InstanceOf(FeatureSpec)], "The recogniser features the input holds.")


def _columns(owner: str, spec: FeatureSpec, names: Sequence[str] | None) -> list[int]:
    layout = {name: (begin, stop) for name, begin, stop in spec.layout()}
    names = list(layout) if names is None else list(names)
    unknown = [name for name in names if name not in layout]
    if unknown or not names:
        raise InvalidParameterError(owner, "columns", f"names among {list(layout)}", names)
    return [i for name in names for i in range(*layout[name])]


class _FeatureHead(nn.Module):
    """Selected feature columns -> BatchNorm -> dropout -> Linear -> PReLU -> Linear -> 1 (+ log-norm path)."""

    columns: torch.Tensor  # a buffer (register_buffer)

    def __init__(self, owner: str, *, spec: FeatureSpec, columns: Sequence[str] | None, hidden: int,
                 dropout: float, norm_path: bool) -> None:
        super().__init__()
        validate(owner, {"spec": spec, "hidden": hidden, "dropout": dropout}, {"spec": _SPEC, "hidden": _HIDDEN,
                                                                               "dropout": _DROPOUT})
        self.spec = spec
        index = _columns(owner, spec, columns)
        self.register_buffer("columns", torch.as_tensor(index, dtype=torch.long))
        self.norm = nn.BatchNorm1d(len(index))
        self.dropout = nn.Dropout(float(dropout))
        self.hidden = nn.Linear(len(index), hidden)
        self.activation = nn.PReLU(hidden)
        self.output = nn.Linear(hidden, 1)
        self.norm_path = bool(norm_path)
        if self.norm_path:
            self.log_norm_scale = nn.BatchNorm1d(1)
            self.log_norm_weight = nn.Linear(1, 1, bias=False)

    @torch.no_grad()
    def init_output_bias(self, value: float) -> None:
        """Start predicting ``value`` (the mean target), so training does not spend epochs moving the offset."""
        self.output.bias.fill_(value)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.norm(features.index_select(1, self.columns)))
        out = self.output(self.activation(self.hidden(x))).squeeze(1)
        if self.norm_path:  # the recogniser's own confidence, outside dropout: the model adds to it
            out = out + self.log_norm_weight(self.log_norm_scale(features[:, -1:])).squeeze(1)
        return out


class QualityHead(_FeatureHead):
    """The mean of SFace's last feature map over its 7 x 7 positions -> BatchNorm -> dropout -> PReLU MLP.

    v0.1's head study chose this pooled layout over a flattened one (SDD-FIQA's), a learned global depthwise
    pooling and a 1x1-conv reduction by validation Spearman on training identities (``studies/results/head.md``;
    the script went with the full-map cache it needed). About 0.13M parameters with ``hidden=128``.

    Parameters
    ----------
    spec : FeatureSpec
        The recogniser features the input holds (:mod:`fiqa.embed.features`).
    hidden : int >= 1
    dropout : float in [0, 1)

    Input: float32 tensor (B, spec.dim); output: float32 tensor (B,) raw scores.
    """

    param_specs: ClassVar[dict[str, Param]] = {"spec": _SPEC, "hidden": _HIDDEN, "dropout": _DROPOUT}

    def __init__(self, *, spec: FeatureSpec = SFACE_TAPS, hidden: int = 128, dropout: float = 0.5) -> None:
        last = spec.taps[-1][0]
        super().__init__("QualityHead", spec=spec, columns=[f"{last}/mean"], hidden=hidden, dropout=dropout,
                         norm_path=False)


class TapsHead(_FeatureHead):
    """All quality features -> BatchNorm -> dropout -> PReLU MLP, plus a linear path on the embedding's log norm.

    Low-level evidence of a failed capture (blur, noise, compression) lives in the early stages, which a head on
    the last map alone never sees; the raw embedding's norm is the recogniser's own confidence (the free signal
    every model must beat), given a linear path outside dropout so the network learns what to add to it.
    About 0.5M parameters with ``hidden=128``.

    Parameters
    ----------
    spec : FeatureSpec
    hidden : int >= 1
    dropout : float in [0, 1)
    columns : sequence of str, optional
        Feature groups to read (names of ``spec.layout()``); default all.

    Input: float32 tensor (B, spec.dim); output: float32 tensor (B,) raw scores.
    """

    param_specs: ClassVar[dict[str, Param]] = {
        "spec": _SPEC, "hidden": _HIDDEN, "dropout": _DROPOUT,
        "columns": Param(None, [InstanceOf((list, tuple), "a sequence of feature group names"), None],
                         "Feature groups to read (names of spec.layout()); None: all."),
    }

    def __init__(self, *, spec: FeatureSpec = SFACE_TAPS, hidden: int = 128, dropout: float = 0.5,
                 columns: Sequence[str] | None = None) -> None:
        super().__init__("TapsHead", spec=spec, columns=columns, hidden=hidden, dropout=dropout, norm_path=True)




class _ConvBlock(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                 activation: bool = True, padding: int | None = None) -> None:
        padding = kernel // 2 if padding is None else padding
        layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel, stride, padding, groups=groups, bias=False),
                                   nn.BatchNorm2d(c_out)]
        if activation:
            layers.append(nn.PReLU(c_out))
        super().__init__(*layers)


class _Bottleneck(nn.Module):
    """Inverted residual: 1x1 expand -> 3x3 depthwise -> 1x1 linear projection (residual when shapes allow)."""

    def __init__(self, c_in: int, c_out: int, stride: int, expansion: int) -> None:
        super().__init__()
        mid = c_in * expansion
        self.residual = stride == 1 and c_in == c_out
        self.body = nn.Sequential(_ConvBlock(c_in, mid), _ConvBlock(mid, mid, 3, stride, groups=mid),
                                  _ConvBlock(mid, c_out, activation=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


class MobileFaceNet(nn.Module):
    """MobileFaceNet backbone (Chen et al., 2018): (B, 3, 112, 112) normalised input -> (B, embedding_size)."""

    # (expansion, channels, repeats, first stride)
    _STAGES = ((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1))

    def __init__(self, embedding_size: int = 128) -> None:
        super().__init__()
        layers: list[nn.Module] = [_ConvBlock(3, 64, 3, 2), _ConvBlock(64, 64, 3, 1, groups=64)]
        channels = 64
        for expansion, c_out, repeats, stride in self._STAGES:
            for i in range(repeats):
                layers.append(_Bottleneck(channels, c_out, stride if i == 0 else 1, expansion))
                channels = c_out
        # global depthwise conv (GDC): a 7x7 depthwise kernel over the whole 7x7 map, no padding
        layers += [_ConvBlock(channels, 512), _ConvBlock(512, 512, 7, 1, groups=512, activation=False, padding=0)]
        layers += [nn.Conv2d(512, embedding_size, 1, bias=False), nn.BatchNorm2d(embedding_size), nn.Flatten()]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class MobileFaceNetRegressor(nn.Module):
    """MobileFaceNet backbone -> PReLU -> Dropout -> Linear -> 1, on aligned crops.

    Parameters
    ----------
    embedding_size : int >= 1
    dropout : float in [0, 1)
    backbone_checkpoint : path or None
        A PyTorch ``state_dict`` of :class:`MobileFaceNet` (e.g. a recogniser trained with it) to start from.

    Input: float32 tensor (B, 3, 112, 112), RGB, 0..255 (the same input as SFace); normalised inside as
    ``(x - 127.5) / 128``. Output: float32 tensor (B,) raw scores.
    """

    param_specs: ClassVar[dict[str, Param]] = {
        "embedding_size": Param(128, [Interval(int, 1, None, closed="left")], "Width of the backbone's output."),
        "dropout": replace(_DROPOUT, default=0.2),
        "backbone_checkpoint": Param(None, [PathLike(), None],
                                     "A PyTorch state_dict of MobileFaceNet to start from (None: from scratch)."),
    }

    def __init__(self, *, embedding_size: int = 128, dropout: float = 0.2,
                 backbone_checkpoint: str | Path | None = None) -> None:
        super().__init__()
        validate("MobileFaceNetRegressor", {"embedding_size": embedding_size, "dropout": dropout,
                                            "backbone_checkpoint": backbone_checkpoint}, self.param_specs)
        embedding_size = int(embedding_size)
        self.backbone = MobileFaceNet(embedding_size)
        if backbone_checkpoint is not None:
            self.backbone.load_state_dict(_load_state_dict(backbone_checkpoint))
        self.head = nn.Sequential(nn.PReLU(embedding_size), nn.Dropout(float(dropout)), nn.Linear(embedding_size, 1))

    @torch.no_grad()
    def init_output_bias(self, value: float) -> None:
        """Start predicting ``value`` (the mean target), so training does not spend epochs moving the offset."""
        output = self.head[-1]
        assert isinstance(output, nn.Linear)  # built in __init__
        output.bias.fill_(value)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone((images - 127.5) / 128.0)).squeeze(1)


def _load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: backbone checkpoint does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for a bad file
        raise ModelFileError(f"{path}: not a readable PyTorch checkpoint ({exc})") from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise ModelFileError(f"{path}: expected a state_dict (a mapping of parameter names to tensors)")
    return state


REGRESSORS.register("head", QualityHead, input="features",
                    summary="Small head on the pooled last SFace feature map; CPU-friendly (default)")
REGRESSORS.register("taps", TapsHead, input="features",
                    summary="Head on every recogniser stage (mean and spread) and the raw embedding, plus its log "
                            "norm as a linear path")
REGRESSORS.register("mobilefacenet", MobileFaceNetRegressor, input="crops",
                    reference="Chen et al., MobileFaceNets, CCBR 2018",
                    summary="Full MobileFaceNet regressor on aligned crops, from scratch or a checkpoint")

FEATURE_HEADS = tuple(entry.name for entry in REGRESSORS.entries() if entry.fields["input"] == "features")
"""Regressor shapes that read the cached quality features instead of crops (their ``input`` metadata)."""


class PiecewiseLinear(nn.Module):
    """The calibration map of a :class:`QuantileCalibration` as a PyTorch layer: (B,) raw -> (B,) quality."""

    starts: torch.Tensor  # buffers (register_buffer)
    widths: torch.Tensor
    slopes: torch.Tensor

    def __init__(self, calibration: QuantileCalibration) -> None:
        super().__init__()
        starts, widths, slopes, base = calibration.segments()
        for name, values in [("starts", starts), ("widths", widths), ("slopes", slopes)]:
            self.register_buffer(name, torch.as_tensor(values, dtype=torch.float32))
        self.base = float(base)

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        ramps = torch.minimum(torch.clamp(raw[:, None] - self.starts, min=0.0), self.widths)
        return self.base + (ramps * self.slopes).sum(dim=1)


class CalibratedRegressor(nn.Module):
    """A regressor followed by its calibration: input -> ``(quality (B,), raw_score (B,))``."""

    def __init__(self, regressor: nn.Module, calibration: QuantileCalibration) -> None:
        super().__init__()
        self.regressor = regressor
        self.calibrate = PiecewiseLinear(calibration)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw = self.regressor(x)
        return self.calibrate(raw), raw
