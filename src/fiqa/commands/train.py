"""``fiqa train STORE LABELS -o MODEL_DIR``: train a quality regressor and export it to ONNX."""
from __future__ import annotations

import click

from fiqa.commands._common import check_out, info, out_option, require_torch
from fiqa.train.config import SHAPES, TrainConfig


@click.command("train")
@click.argument("store", type=click.Path(exists=True, file_okay=False))
@click.argument("labels", type=click.Path(exists=True, dir_okay=False))
@out_option("Model folder to write.", dest="out_dir", type=click.Path(file_okay=False))
@click.option("--shape", type=click.Choice(SHAPES), default="head", show_default=True,
              help="head: small head on SFace's pooled last stage (CPU); taps: the same on every stage and the "
                   "embedding's norm; mobilefacenet: full network.")
@click.option("--epochs", type=int, default=TrainConfig.epochs, show_default=True)
@click.option("--batch-size", type=int, default=TrainConfig.batch_size, show_default=True)
@click.option("--lr", "learning_rate", type=float, default=TrainConfig.learning_rate, show_default=True)
@click.option("--weight-decay", type=float, default=TrainConfig.weight_decay, show_default=True)
@click.option("--huber-delta", type=float, default=TrainConfig.huber_delta, show_default=True,
              help="Huber delta in label points on the 0-100 target scale.")
@click.option("--patience", type=int, default=TrainConfig.patience, show_default=True)
@click.option("--validation-fraction", type=float, default=0.2, show_default=True,
              help="Fraction of identities held out for validation.")
@click.option("--backbone-checkpoint", type=click.Path(exists=True, dir_okay=False), default=None,
              help="mobilefacenet only: start from this backbone state_dict.")
@click.option("--random-state", type=int, default=0, show_default=True)
@click.option("--resume/--no-resume", default=True, show_default=True,
              help="Continue from the checkpoint in --out, or start over.")
@click.option("--force", is_flag=True,
              help="Train even on labels that record another store's fingerprint (e.g. the same images embedded "
                   "again); warns. Labels whose image locations differ are refused all the same.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where torch trains: auto takes the GPU when CUDA is available; cuda needs a CUDA build of torch "
                   "(pip install 'fiqa[cuda]').")
def command(store: str, labels: str, out_dir: str, shape: str, epochs: int, batch_size: int, learning_rate: float,
            weight_decay: float, huber_delta: float, patience: int, validation_fraction: float,
            backbone_checkpoint: str | None, random_state: int, resume: bool, force: bool, device: str) -> None:
    """Train a Huber-loss regressor on LABELS of STORE; write MODEL_DIR/model.onnx and training plots.

    Needs PyTorch: pip install 'fiqa[train]'.
    """
    check_out(out_dir, store, labels, backbone_checkpoint)  # before any work: never an input or inside one
    require_torch("fiqa train")
    from fiqa.train import train_regressor

    config = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        huber_delta=huber_delta,
        patience=patience,
        random_state=random_state,
    )
    params = {"backbone_checkpoint": backbone_checkpoint} if backbone_checkpoint else None
    trained = train_regressor(
        store,
        labels,
        out_dir,
        shape=shape,
        model_params=params,
        config=config,
        validation_fraction=validation_fraction,
        resume=resume,
        force=force,
        device=device,
    )
    result = trained.result
    info(
        f"validation Spearman {result.spearman:.3f}, Pearson {result.pearson:.3f} "
        f"(best epoch {result.best_epoch} of {len(result.history)})"
    )
    if trained.model_path is not None:
        info(f"model: {trained.model_path}")
        info(f"plot:  {trained.out_dir / 'training.png'}")
