"""``fiqa build-model [LFW] -o DIR [--install]``: rebuild the shipped default quality model and its card."""
from __future__ import annotations

import click

from fiqa.commands._common import info, out_option, progress, require_torch


@click.command("build-model")
@click.argument("lfw", required=False, type=click.Path(file_okay=False))
@out_option("Working folder; a re-run reuses the finished stages.", required=False, dest="out_dir",
            default="runs/default-model", show_default=True, type=click.Path(file_okay=False))
@click.option("--epochs", type=int, default=30, show_default=True, help="Maximum epochs per model.")
@click.option(
    "--random-state",
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the split, augmentation and training.",
)
@click.option(
    "--model-version",
    "--version",
    "model_version",
    default=None,
    help="The model's version in its card (--version is the old name).",
)
@click.option("--install", is_flag=True, help="Copy head.onnx and card.json into fiqa/score/default.")
def command(lfw, out_dir, epochs, random_state, model_version, install) -> None:
    """Embed LFW (people with >= 2 photos), measure the default recipe on held-apart identities, train it on
    everyone, and write the model with its card (figures and the reject-threshold table) to OUT/package.

    Needs PyTorch: pip install 'fiqa[train]'.
    """
    require_torch("fiqa build-model")
    from fiqa.release import build_default_model
    from fiqa.score import format_card
    from fiqa.score.packaged import load_model_folder

    package = build_default_model(
        lfw,
        out_dir,
        random_state=random_state,
        epochs=epochs,
        version=model_version,
        install=install,
        progress=progress(),
    )
    _, _, card = load_model_folder(package)
    info(format_card(card))
    info(f"\npackage: {package.resolve()}" + ("  (installed into fiqa/score/default)" if install else ""))
