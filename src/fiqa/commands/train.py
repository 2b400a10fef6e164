"""``fiqa train STORE LABELS --out MODEL_DIR``: train a quality regressor and export it to ONNX."""
from __future__ import annotations

import click

from fiqa.train.config import SHAPES, TrainConfig


@click.command("train")
@click.argument("store", type=click.Path(exists=True, file_okay=False))
@click.argument("labels", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Model folder to write.")
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
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-resume", is_flag=True, help="Start again even if MODEL_DIR holds a checkpoint.")
def command(store: str, labels: str, out_dir: str, shape: str, epochs: int, batch_size: int, learning_rate: float,
            weight_decay: float, huber_delta: float, patience: int, validation_fraction: float,
            backbone_checkpoint: str | None, seed: int, no_resume: bool) -> None:
    """Train a Huber-loss regressor on LABELS of STORE; write MODEL_DIR/model.onnx and training plots."""
    from fiqa.train import train_regressor

    config = TrainConfig(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                         weight_decay=weight_decay, huber_delta=huber_delta, patience=patience, seed=seed)
    params = {"backbone_checkpoint": backbone_checkpoint} if backbone_checkpoint else None
    trained = train_regressor(store, labels, out_dir, shape=shape, model_params=params, config=config,
                              validation_fraction=validation_fraction, resume=not no_resume)
    result = trained.result
    click.echo(f"validation Spearman {result.spearman:.3f}, Pearson {result.pearson:.3f} "
               f"(best epoch {result.best_epoch} of {len(result.history)})")
    if trained.model_path is not None:
        click.echo(f"model: {trained.model_path}")
        click.echo(f"plot:  {trained.out_dir / 'training.png'}")
