"""The training loop shared by every regressor shape.

Huber loss (:func:`fiqa.train.losses.huber_loss`), AdamW, linear warm-up then cosine decay per step, early
stopping on the validation loss, a checkpoint after every epoch holding all state (model, optimiser, scheduler,
RNG state, epoch, best metric and best weights) so that an interrupted run resumes to the same final weights.

Distributed: under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) the model is wrapped in
``DistributedDataParallel`` (gloo on CPU, nccl on GPU), each rank reads its shard of every epoch, every rank
evaluates the whole validation set (so the early-stopping decision agrees), and only rank 0 writes files.
"""
from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from scipy import stats
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler, Sampler, SequentialSampler

from fiqa.core.atomic import atomic_path, write_json
from fiqa.core.errors import InvalidParameterError, StoreError
from fiqa.core.outputs import make_output_dir
from fiqa.core.progress import tqdm
from fiqa.train.config import TrainConfig
from fiqa.train.losses import huber_loss

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"


@dataclass
class TrainResult:
    """What :func:`fit` returns (and rank 0 writes as ``history.json``).

    Attributes
    ----------
    history : list of dict
        Per epoch: ``epoch``, ``train_loss``, ``validation_loss``, ``spearman``, ``pearson``, ``learning_rate``.
    best_epoch : int
        The epoch (1-based) whose weights the model holds after :func:`fit`.
    best_validation_loss : float
    spearman, pearson : float
        Validation correlations of the best weights' predictions with the targets.
    stopped_early : bool
    """

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_validation_loss: float = math.inf
    spearman: float = math.nan
    pearson: float = math.nan
    stopped_early: bool = False


class TensorPairs(Dataset):
    """``(input, target)`` pairs from an indexable array of inputs (e.g. a memory-mapped feature file).

    Indexed with a list of positions (the loaders here pass one per batch, :func:`batch_loader`) it reads the whole
    batch in one sorted fancy index of ``inputs``, so a memory-mapped file is read in row order rather than one row
    at a time.

    Parameters
    ----------
    inputs : array-like of shape (N, ...)
        Converted to float32 when read.
    rows : ndarray of shape (n,), int
        Which rows of ``inputs`` this dataset holds.
    targets : ndarray of shape (n,), float32
    """

    def __init__(self, inputs: Any, rows: np.ndarray, targets: np.ndarray) -> None:
        if len(rows) != len(targets):
            raise ValueError(f"{len(rows)} rows but {len(targets)} targets")
        self.inputs, self.rows, self.targets = inputs, np.asarray(rows), np.asarray(targets, np.float32)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, item: int | Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        if np.ndim(item) == 0:
            x = np.asarray(self.inputs[self.rows[item]], dtype=np.float32)
            return torch.from_numpy(x), torch.tensor(self.targets[item])
        positions = np.asarray(item, dtype=np.int64)
        rows = self.rows[positions]
        order = np.argsort(rows, kind="stable")
        batch = np.asarray(self.inputs[rows[order]], dtype=np.float32)
        x = np.empty_like(batch)
        x[order] = batch
        return torch.from_numpy(x), torch.from_numpy(self.targets[positions])


def batch_loader(dataset: TensorPairs, sampler: Sampler | None, batch_size: int, *, drop_last: bool = False,
                 num_workers: int = 0) -> DataLoader:
    """A loader that hands ``dataset`` one list of positions per batch (in ``sampler``'s order, sequential by
    default), so each batch is one read."""
    batches = BatchSampler(sampler if sampler is not None else SequentialSampler(dataset), batch_size, drop_last)
    return DataLoader(dataset, batch_size=None, sampler=batches, num_workers=num_workers)


def training_device(device: str = "auto") -> torch.device:
    """The torch device to train on: ``"auto"`` takes this process's GPU (``LOCAL_RANK``) when CUDA is available,
    else the CPU; ``"cuda"`` without CUDA is refused (InvalidParameterError, naming what to install)."""
    if device not in ("auto", "cpu", "cuda"):
        raise InvalidParameterError("fit", "device", "one of 'auto', 'cpu', 'cuda'", device)
    if device == "cuda" and not torch.cuda.is_available():
        raise InvalidParameterError("fit", "device", f"a device this torch can use (torch {torch.__version__} sees "
                                    f"no CUDA GPU; install a CUDA build of torch: pip install 'fiqa[cuda]')", device)
    if device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))


def distributed_context() -> tuple[int, int]:
    """``(rank, world_size)``; initialises the process group when launched by ``torchrun`` with > 1 process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


@torch.no_grad()
def predict(model: nn.Module, dataset: TensorPairs, *, batch_size: int = 256) -> np.ndarray:
    """Raw predictions of ``model`` (in eval mode) on ``dataset``: ndarray of shape (len(dataset),), float64."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    outputs = [model(x.to(device)).double().cpu() for x, _ in batch_loader(dataset, None, batch_size)]
    model.train(was_training)
    return torch.cat(outputs).numpy() if outputs else np.zeros(0)


def _correlations(predictions: np.ndarray, targets: np.ndarray) -> tuple[float, float]:
    if len(targets) < 2 or np.ptp(predictions) == 0 or np.ptp(targets) == 0:
        return math.nan, math.nan
    return float(stats.spearmanr(predictions, targets).statistic), float(stats.pearsonr(predictions, targets).statistic)


def _save_checkpoint(state: dict[str, Any], path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def fit(model: nn.Module, train_set: TensorPairs, validation_set: TensorPairs, config: TrainConfig,
        out_dir: str | Path, *, resume: bool = True, extra_state: dict[str, Any] | None = None,
        device: str = "auto") -> TrainResult:
    """Train ``model`` in place; on return it holds the weights of the best validation epoch.

    Parameters
    ----------
    model : nn.Module
        Maps a batch of inputs to raw scores of shape (B,). If it has ``init_output_bias(value)``, that is
        called with the mean training target first.
    train_set, validation_set : TensorPairs
        ``(input, target)`` pairs; targets are float32 on the 0-100 scale.
    config : TrainConfig
    out_dir : path
        Where rank 0 writes ``checkpoint.pt``, ``history.json`` and ``training.png``.
    resume : bool
        Continue from ``out_dir/checkpoint.pt`` when it exists (its saved config must equal ``config``);
        when False an existing checkpoint is overwritten.
    extra_state : dict, optional
        JSON-able facts stored in the checkpoint (e.g. the model shape, its parameters, a fingerprint of the
        training data); resuming a checkpoint whose facts differ is refused, naming them.
    device : {"auto", "cpu", "cuda"}, default="auto"
        See :func:`training_device`. A checkpoint resumes on any device.

    Returns
    -------
    TrainResult
    """
    out_dir = Path(out_dir)
    rank, world_size = distributed_context()
    where = training_device(device)  # before the folder is made: a refused device leaves nothing behind
    if rank == 0:
        make_output_dir(out_dir, "model")  # marked as fiqa's when fiqa creates it
    init_output_bias = getattr(model, "init_output_bias", None)
    if callable(init_output_bias):  # overwritten by the checkpoint when resuming
        init_output_bias(float(np.mean(np.asarray(train_set.targets))))
    model.to(where)
    torch.manual_seed(config.random_state + rank)
    sampler, loader, optimizer, scheduler = _optimisation(model, train_set, config, rank, world_size)

    checkpoint_path = out_dir / CHECKPOINT_NAME
    progress = _Progress(TrainResult())
    if resume and checkpoint_path.exists():
        progress = _resume(checkpoint_path, where, model, optimizer, scheduler, config, extra_state)
    trained = DistributedDataParallel(model) if dist.is_initialized() else model
    epochs = tqdm(range(progress.epoch, config.epochs), desc="train", unit="epoch", disable=rank != 0,
                  initial=progress.epoch, total=config.epochs)
    for epoch in epochs:
        if progress.result.stopped_early:
            break
        sampler.set_epoch(epoch)
        losses = _train_epoch(trained, loader, optimizer, scheduler, config, where, f"epoch {epoch + 1}", rank)
        if dist.is_initialized():  # BatchNorm statistics drift apart per rank: use rank 0's, so all ranks agree
            for buffer in model.buffers():
                dist.broadcast(buffer, src=0)
        validation_loss, spearman, pearson = _validate(model, validation_set, config)
        progress.record(model, epoch + 1, float(np.mean(losses)), validation_loss, spearman, pearson,
                        optimizer.param_groups[0]["lr"], config.patience)
        epochs.set_postfix(train=f"{np.mean(losses):.2f}", val=f"{validation_loss:.2f}", rho=f"{spearman:.3f}")
        logger.info("epoch %d: train loss %.3f, validation loss %.3f, Spearman %.3f, Pearson %.3f",
                    epoch + 1, np.mean(losses), validation_loss, spearman, pearson)
        if rank == 0:
            _save_checkpoint(progress.checkpoint(model, optimizer, scheduler, config, extra_state), checkpoint_path)
    if progress.best_state is not None:
        model.load_state_dict(progress.best_state)
    if rank == 0:
        write_json(out_dir / "history.json", asdict(progress.result))
        plot_history(progress.result, out_dir / "training.png")
    return progress.result


@dataclass
class _Progress:
    """Where a training run stands after ``epoch`` finished epochs (what a checkpoint keeps besides the optimiser).

    ``best_state`` holds the best epoch's weights; ``waited`` counts the epochs since the validation loss last
    improved.
    """

    result: TrainResult
    epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    waited: int = 0

    def record(self, model: nn.Module, epoch: int, train_loss: float, validation_loss: float, spearman: float,
               pearson: float, learning_rate: float, patience: int) -> None:
        """Add finished epoch ``epoch`` (1-based) to the history; keep the weights when they are the best so far."""
        result = self.result
        result.history.append({"epoch": epoch, "train_loss": train_loss, "validation_loss": validation_loss,
                               "spearman": spearman, "pearson": pearson, "learning_rate": learning_rate})
        self.epoch = epoch
        if validation_loss < result.best_validation_loss:
            result.best_validation_loss, result.best_epoch = validation_loss, epoch
            result.spearman, result.pearson = spearman, pearson
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            self.waited = 0
        else:
            self.waited += 1
            result.stopped_early = self.waited >= patience

    def checkpoint(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                   scheduler: torch.optim.lr_scheduler.LRScheduler, config: TrainConfig,
                   extra_state: dict[str, Any] | None) -> dict[str, Any]:
        """All state of the run: resuming from it reaches the same final weights."""
        return {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "epoch": self.epoch, "best_model": self.best_state,
            "waited": self.waited, "result": asdict(self.result), "config": asdict(config),
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
            "extra": dict(extra_state or {}),
        }


def _optimisation(model: nn.Module, train_set: TensorPairs, config: TrainConfig, rank: int,
                  world_size: int) -> tuple[DistributedSampler, DataLoader, torch.optim.Optimizer,
                                            torch.optim.lr_scheduler.LambdaLR]:
    """This rank's sampler and loader of ``train_set``, AdamW, and the warm-up-then-cosine schedule per step."""
    sampler: DistributedSampler = DistributedSampler(train_set, num_replicas=world_size, rank=rank, shuffle=True,
                                                     seed=config.random_state)
    loader = batch_loader(train_set, sampler, config.batch_size, num_workers=config.num_workers,
                          drop_last=len(train_set) // world_size > config.batch_size)
    steps_per_epoch = max(1, len(loader))
    total_steps = steps_per_epoch * config.epochs
    warmup_steps = int(round(config.warmup_epochs * steps_per_epoch))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _lr_factor(step, warmup_steps, total_steps))
    return sampler, loader, optimizer, scheduler


def _resume(checkpoint_path: Path, device: torch.device, model: nn.Module, optimizer: torch.optim.Optimizer,
            scheduler: torch.optim.lr_scheduler.LRScheduler, config: TrainConfig,
            extra_state: dict[str, Any] | None) -> _Progress:
    """Restore model, optimiser, scheduler and RNG from a checkpoint written for the same data and config."""
    try:  # tensors and plain data only: a crafted checkpoint must never run code
        checkpoint = torch.load(checkpoint_path, map_location=device, weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for a bad or hostile file
        raise StoreError(f"{checkpoint_path}: not a fiqa training checkpoint ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}); delete it or pass resume=False "
                         f"to start again") from None
    saved_extra, extra = checkpoint.get("extra", {}), dict(extra_state or {})
    if saved_extra != extra:
        changed = sorted(k for k in set(saved_extra) | set(extra) if saved_extra.get(k) != extra.get(k))
        raise StoreError(f"{checkpoint_path}: checkpoint was written for other training data or another model "
                         f"(differs in: {', '.join(changed)}); pass resume=False to start again")
    if checkpoint.get("config") != asdict(config):
        changed = sorted(k for k, v in asdict(config).items() if checkpoint.get("config", {}).get(k) != v)
        raise StoreError(f"{checkpoint_path}: checkpoint was written with a different configuration "
                         f"(differs in: {', '.join(changed)}); pass resume=False to start again")
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    torch.set_rng_state(checkpoint["rng"]["torch"])
    if torch.cuda.is_available() and checkpoint["rng"].get("cuda") is not None:
        torch.cuda.set_rng_state_all(checkpoint["rng"]["cuda"])
    logger.info("resumed from %s after epoch %d", checkpoint_path, checkpoint["epoch"])
    return _Progress(TrainResult(**checkpoint["result"]), checkpoint["epoch"], checkpoint["best_model"],
                     checkpoint["waited"])


def _train_epoch(trained: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler, config: TrainConfig, device: torch.device,
                 description: str, rank: int) -> list[float]:
    """One pass over this rank's shard: a Huber-loss step (and a scheduler step) per batch; the batch losses."""
    trained.train()
    losses = []
    for inputs, targets in tqdm(loader, desc=description, unit="batch", leave=False, disable=rank != 0):
        loss = huber_loss(trained(inputs.to(device)), targets.to(device), config.huber_delta)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    return losses


def _validate(model: nn.Module, validation_set: TensorPairs, config: TrainConfig) -> tuple[float, float, float]:
    """``(Huber loss, Spearman, Pearson)`` of the model's predictions on the whole validation set."""
    predictions = predict(model, validation_set)
    targets = np.asarray(validation_set.targets, np.float64)
    loss = huber_loss(torch.from_numpy(predictions), torch.from_numpy(targets), config.huber_delta).item()
    spearman, pearson = _correlations(predictions, targets)
    return loss, spearman, pearson


def plot_history(result: TrainResult, path: str | Path) -> Path:
    """Draw training and validation loss and validation Spearman per epoch into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in result.history]
    figure, loss_axis = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    loss_axis.plot(epochs, [h["train_loss"] for h in result.history], "o-", label="train loss")
    loss_axis.plot(epochs, [h["validation_loss"] for h in result.history], "s-", label="validation loss")
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("Huber loss (0-100 target scale)")
    rho_axis = loss_axis.twinx()
    rho_axis.plot(epochs, [h["spearman"] for h in result.history], "^--", color="tab:green",
                  label="validation Spearman")
    rho_axis.set_ylabel("Spearman")
    if result.best_epoch:
        loss_axis.axvline(result.best_epoch, color="grey", linestyle=":", label=f"best epoch {result.best_epoch}")
    handles = loss_axis.get_legend_handles_labels()[0] + rho_axis.get_legend_handles_labels()[0]
    loss_axis.legend(handles, [str(h.get_label()) for h in handles], loc="upper right", fontsize="small")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return Path(path)
