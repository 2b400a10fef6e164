"""Unit tests of fiqa.train: Huber loss, calibration, configuration, checkpoint resume, the DDP code path."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from fiqa.core.errors import InvalidParameterError, NoUsableSamplesError, StoreError
from fiqa.embed.features import SFACE_TAPS, FeatureSpec
from fiqa.train import (
    TrainConfig,
    fit_quantile_calibration,
    huber_loss,
    list_regressors,
    loop,
)
from fiqa.train.config import SHAPES
from fiqa.train.loop import TensorPairs, batch_loader, fit, predict, training_device
from fiqa.train.models import PiecewiseLinear, QualityHead, TapsHead
from tolerances import U32, assert_within, gamma, two_paths

# a small feature layout: one 4-channel stage (mean 0..3, std 4..7), a 2-D embedding (8, 9), its log norm (10)
SMALL = FeatureSpec("sface", "data", (("stage", 4),), ("embedding", 2), SFACE_TAPS.spec)


@pytest.mark.parametrize("delta", [0.5, 1.0, 5.0, 20.0])
def test_huber_loss_matches_torch_reference(delta):
    generator = torch.Generator().manual_seed(0)
    prediction = torch.randn(200, generator=generator, dtype=torch.float64) * 30
    target = torch.rand(200, generator=generator, dtype=torch.float64) * 100
    expected = F.huber_loss(prediction, target, delta=delta)
    torch.testing.assert_close(huber_loss(prediction, target, delta), expected)


def test_huber_loss_hand_computed_and_gradient_bounded():
    prediction = torch.tensor([0.0, 3.0, -10.0], requires_grad=True)
    # |e| = 0, 3 (quadratic: 4.5), 10 (linear: 5 * (10 - 2.5) = 37.5); mean = 42 / 3
    loss = huber_loss(prediction, torch.zeros(3), 5.0)
    assert loss.item() == pytest.approx(14.0)
    loss.backward()
    np.testing.assert_allclose(prediction.grad.numpy(), np.array([0.0, 3.0, -5.0]) / 3)


def test_huber_loss_rejects_bad_delta():
    with pytest.raises(InvalidParameterError, match="'delta' parameter of huber_loss must be a float > 0"):
        huber_loss(torch.zeros(2), torch.zeros(2), 0.0)


def test_calibration_is_monotone_in_range_and_maps_quantiles_to_rescaled_labels():
    rng = np.random.default_rng(0)
    labels = rng.uniform(20, 60, 500)
    raw = 3.0 * labels - 7.0  # a perfect monotone predictor
    calibration = fit_quantile_calibration(raw, labels, n_knots=101)
    expected = 100 * (labels - labels.min()) / (labels.max() - labels.min())
    # a sample and its interpolated quality lie between the same two knots (both maps are monotone and agree at
    # the knots): they differ by at most the largest step between adjacent quality knots (about 1 point here)
    np.testing.assert_allclose(calibration(raw), expected, rtol=0, atol=np.diff(calibration.quality_knots).max())
    grid = np.linspace(raw.min() - 50, raw.max() + 50, 2001)
    quality = calibration(grid)
    assert np.all(np.diff(quality) >= 0)
    assert quality.min() == 0.0 and quality.max() == 100.0


def test_calibration_merges_tied_raw_scores_and_rejects_constant_predictions():
    raw = np.array([0.0] * 50 + list(np.linspace(1, 2, 50)))
    calibration = fit_quantile_calibration(raw, np.arange(100.0), n_knots=11)
    assert np.all(np.diff(calibration.raw_knots) > 0)
    assert np.all(np.diff(calibration.quality_knots) >= 0)
    with pytest.raises(NoUsableSamplesError, match="Cannot calibrate"):
        fit_quantile_calibration(np.ones(10), np.arange(10.0))
    with pytest.raises(InvalidParameterError, match="'n_knots'"):
        fit_quantile_calibration(raw, np.arange(100.0), n_knots=1)


@pytest.mark.numerics
def test_piecewise_linear_layer_equals_numpy_interpolation():
    rng = np.random.default_rng(1)
    calibration = fit_quantile_calibration(rng.normal(size=300), rng.gamma(2.0, size=300), n_knots=21)
    points = np.concatenate([rng.normal(scale=2, size=500), calibration.raw_knots])
    got = PiecewiseLinear(calibration)(torch.tensor(points, dtype=torch.float64).float()).double().numpy()
    # float32 sum of K ramps (gamma_{K+1} of <= 100), r - s_k rounded (u |r - s_k| |slope_k| each), the input and
    # the knots stored as float32 (u relative each: u |r| max slope, and 2 u per segment's quality step <= 100)
    starts, _, slopes, _ = calibration.segments()
    reach = np.abs(points).max() + np.abs(starts).max()
    allowed = (gamma(len(slopes) + 1) * 100 + U32 * reach * np.abs(slopes).sum() + U32 * reach * slopes.max()
               + 2 * U32 * 100)
    np.testing.assert_allclose(got, calibration(points), rtol=0, atol=allowed)


def test_train_config_validates_with_parameter_names():
    with pytest.raises(InvalidParameterError,
                       match=r"The 'epochs' parameter of TrainConfig must be an int >= 1\. Got 0"):
        TrainConfig(epochs=0)
    with pytest.raises(InvalidParameterError, match="'huber_delta'"):
        TrainConfig(huber_delta=-1.0)
    assert list_regressors() == ["head", "mobilefacenet", "taps"] == list(SHAPES)


def _synthetic(n: int, random_state: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(random_state)
    features = rng.normal(size=(n, SMALL.dim)).astype(np.float32)
    # a function of the stage's channel means: the only columns the plain head reads
    targets = (50 + 30 * features[:, 0] - 24 * features[:, 2]).astype(np.float32)
    return features, targets


def _run(out_dir, config, resume=True):
    features, targets = _synthetic(160, 0)
    torch.manual_seed(config.random_state)
    model = QualityHead(spec=SMALL, hidden=8, dropout=0.2)
    result = fit(model, TensorPairs(features, np.arange(120), targets[:120]),
                 TensorPairs(features, np.arange(120, 160), targets[120:]), config, out_dir, resume=resume)
    return model, result


CONFIG = TrainConfig(epochs=5, batch_size=16, learning_rate=1e-2, patience=10, random_state=3)


def test_training_learns_a_synthetic_target(tmp_path):
    _model, result = _run(
        tmp_path, TrainConfig(epochs=15, batch_size=16, learning_rate=3e-2, patience=15, random_state=3)
    )
    assert result.spearman > 0.8
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert (tmp_path / "training.png").stat().st_size > 0 and (tmp_path / "history.json").exists()


def test_resume_after_interruption_reaches_the_same_final_weights(tmp_path, monkeypatch):
    reference, reference_result = _run(tmp_path / "straight", CONFIG)

    save = loop._save_checkpoint
    calls = []

    def save_then_crash(state, path):
        save(state, path)
        calls.append(state["epoch"])
        if len(calls) == 2:
            raise KeyboardInterrupt("simulated crash after epoch 2")

    monkeypatch.setattr(loop, "_save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "resumed", CONFIG)
    monkeypatch.setattr(loop, "_save_checkpoint", save)
    resumed, resumed_result = _run(tmp_path / "resumed", CONFIG)

    assert calls == [1, 2]
    assert [h["epoch"] for h in resumed_result.history] == [1, 2, 3, 4, 5]
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value, rtol=0, atol=0, msg=name)
    assert resumed_result.best_validation_loss == reference_result.best_validation_loss


def test_resume_refuses_a_checkpoint_of_another_configuration(tmp_path):
    _run(tmp_path, TrainConfig(epochs=1, batch_size=16, random_state=3))
    with pytest.raises(StoreError, match="differs in: epochs"):
        _run(tmp_path, TrainConfig(epochs=2, batch_size=16, random_state=3))
    _run(tmp_path, TrainConfig(epochs=2, batch_size=16, random_state=3), resume=False)


@pytest.mark.numerics
def test_ddp_code_path_with_one_gloo_process_equals_plain_training(tmp_path, monkeypatch):
    plain, _ = _run(tmp_path / "plain", CONFIG)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29531")
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        assert loop.distributed_context() == (0, 1)
        distributed, _ = _run(tmp_path / "ddp", CONFIG)
    finally:
        dist.destroy_process_group()
    # bit-identical by construction: the all-reduce over one process copies the gradients and divides by 1
    for name, value in plain.state_dict().items():
        torch.testing.assert_close(distributed.state_dict()[name], value, rtol=0, atol=0, msg=name)
    assert (tmp_path / "ddp" / "checkpoint.pt").exists()


def test_heads_read_their_columns_and_the_taps_head_has_a_norm_path():
    torch.manual_seed(0)
    features = torch.randn(6, SMALL.dim)
    plain, taps = QualityHead(spec=SMALL, hidden=4).eval(), TapsHead(spec=SMALL, hidden=4).eval()
    changed = features.clone()
    changed[:, 4:] += 3.0  # everything but the stage means
    # the plain head reads the means only: the same numbers after its column selection, so bit-identical
    torch.testing.assert_close(plain(changed), plain(features), rtol=0, atol=0)
    assert not torch.allclose(taps(changed), taps(features))
    # the norm path: with the MLP's output layer zeroed, the output is linear in the log norm (last column)
    with torch.no_grad():
        taps.output.weight.zero_()
        taps.output.bias.zero_()
        taps.log_norm_weight.weight.fill_(2.0)
    shifted = features.clone()
    shifted[:, -1] += 1.0
    scale = 2.0 / torch.sqrt(taps.log_norm_scale.running_var + taps.log_norm_scale.eps)
    # each output is 2 BN(x) in float32: x + 1 (one rounding), then BN (at most 7 roundings of each term, on
    # |s| (|x| + |mean|) + |beta|: fiqa.train.parity._batch_norm_bound), times 2 (exact); two such outputs are within
    # twice those 8 roundings. The expected 2 s (BN's weight is 1 here, untouched) is itself rounded 3 times.
    norm = taps.log_norm_scale
    assert torch.equal(norm.weight, torch.ones_like(norm.weight))
    bn_scale = 1 / torch.sqrt(norm.running_var + norm.eps)
    terms = (bn_scale.abs() * (features[:, -1].abs() + 1 + norm.running_mean.abs()) + norm.bias.abs()).detach()
    allowed = two_paths(8, 2 * terms.double().numpy()) + float(gamma(3)) * scale.abs().double().item()
    assert_within((taps(shifted) - taps(features)).detach().numpy(), scale.expand(6).detach().numpy(), allowed)
    with pytest.raises(InvalidParameterError, match="columns"):
        TapsHead(spec=SMALL, columns=["nothing/mean"])


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))  # would create the marker file if unpickled with full pickle


def test_a_crafted_checkpoint_is_refused_without_running_code(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    marker = tmp_path / "ran"
    torch.save({"config": {}, "payload": _RunsCode(marker)}, out / loop.CHECKPOINT_NAME)
    with pytest.raises(StoreError, match="not a fiqa training checkpoint"):
        _run(out, CONFIG)
    assert not marker.exists()


def test_resume_refuses_a_checkpoint_of_other_training_data(tmp_path):
    # hostile case R06: a checkpoint trained on other labels must not be continued silently
    features, targets = _synthetic(160, 0)
    train, validation = (
        TensorPairs(features, np.arange(120), targets[:120]),
        TensorPairs(features, np.arange(120, 160), targets[120:]),
    )
    config = TrainConfig(epochs=1, batch_size=16, random_state=3)
    fit(QualityHead(spec=SMALL, hidden=8), train, validation, config, tmp_path, extra_state={"data_sha256": "a"})
    with pytest.raises(StoreError, match="differs in: data_sha256"):
        fit(QualityHead(spec=SMALL, hidden=8), train, validation, config, tmp_path, extra_state={"data_sha256": "b"})


def test_tensor_pairs_read_each_batch_in_one_read_equal_to_item_by_item(tmp_path):
    rng = np.random.default_rng(4)
    path = tmp_path / "features.npy"
    written = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(50, 6))
    written[:] = rng.normal(size=(50, 6))
    written.flush()
    del written
    inputs = np.load(path, mmap_mode="r")
    rows = rng.permutation(50)[:30]
    data = TensorPairs(inputs, rows, rng.uniform(0, 100, 30))
    positions = [5, 0, 29, 5, 17]  # unsorted rows, one twice
    x, y = data[positions]
    assert x.dtype == torch.float32 and x.shape == (5, 6) and y.shape == (5,)
    for k, position in enumerate(positions):
        one_x, one_y = data[position]
        assert torch.equal(x[k], one_x) and float(y[k]) == float(one_y)
    np.testing.assert_array_equal(x.numpy(), np.asarray(inputs[rows[positions]], np.float32))
    # the loader hands out whole batches in order; the model sees the same rows as item-by-item loading
    batches = list(batch_loader(data, None, 7))
    assert [len(b[0]) for b in batches] == [7, 7, 7, 7, 2]
    np.testing.assert_array_equal(torch.cat([b[0] for b in batches]).numpy(),
                                  np.asarray(inputs[rows], np.float32))
    model = torch.nn.Sequential(torch.nn.Linear(6, 1), torch.nn.Flatten(0))
    with torch.no_grad():
        expected = model(torch.from_numpy(np.asarray(inputs[rows], np.float32))).double().numpy()
    # batches of 4 vs all rows: the 6-term dot products (+ bias) may be blocked differently: 2 gamma_7 of their terms
    layer = model[0]
    magnitude = np.abs(np.asarray(inputs[rows], np.float64)) @ np.abs(layer.weight.detach().double().numpy().T)
    magnitude = magnitude[:, 0] + abs(float(layer.bias.detach()))
    assert_within(predict(model, data, batch_size=4), expected, two_paths(7, magnitude))


def test_training_device_is_explicit_and_cuda_needs_cuda():
    assert training_device("cpu") == torch.device("cpu")
    assert training_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(InvalidParameterError, match="device"):
        training_device("gpu")
    if torch.cuda.is_available():
        assert training_device("cuda").type == "cuda"
    else:
        with pytest.raises(InvalidParameterError, match=r"no CUDA GPU.*fiqa\[cuda\]"):
            training_device("cuda")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_train_on_cuda_without_cuda_is_refused_before_writing_anything(tmp_path):
    """``fiqa train --device cuda`` on a machine without CUDA stops with one error line and makes no folder."""
    from click.testing import CliRunner

    from fiqa.cli import main

    store, labels = tmp_path / "store", tmp_path / "labels.parquet"
    store.mkdir()
    labels.write_bytes(b"")
    out = tmp_path / "model"
    result = CliRunner().invoke(main, ["train", str(store), str(labels), "-o", str(out), "--device", "cuda"])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ") and "fiqa[cuda]" in result.output
    assert not out.exists()

    # the library refuses before training too: fit makes no folder for a device it cannot use
    with pytest.raises(InvalidParameterError, match="no CUDA GPU"):
        fit(QualityHead(spec=SMALL), TensorPairs(*_synthetic(8, 0)[:1], np.arange(4), np.zeros(4, np.float32)),
            TensorPairs(*_synthetic(8, 0)[:1], np.arange(4, 8), np.zeros(4, np.float32)), CONFIG, out,
            device="cuda")
    assert not out.exists()
