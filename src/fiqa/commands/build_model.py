"""``fiqa build-model [LFW] --out DIR [--install]``: rebuild the shipped default quality model and its card."""
from __future__ import annotations

import click


@click.command("build-model")
@click.argument("lfw", required=False, type=click.Path(file_okay=False))
@click.option("--out", "out_dir", default="runs/default-model", show_default=True,
              type=click.Path(file_okay=False), help="Working folder; a re-run reuses the finished stages.")
@click.option("--epochs", type=int, default=30, show_default=True, help="Maximum epochs per model.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--version", "model_version", default=None, help="The model's version in its card.")
@click.option("--install", is_flag=True, help="Copy head.onnx and card.json into fiqa/score/default.")
def command(lfw, out_dir, epochs, seed, model_version, install) -> None:
    """Embed LFW (people with >= 2 photos), measure the default recipe on held-apart identities, train it on
    everyone, and write the model with its card (figures and the reject-threshold table) to OUT/package."""
    from fiqa.release import build_default_model
    from fiqa.score import format_card
    from fiqa.score.packaged import load_model_folder

    package = build_default_model(lfw, out_dir, seed=seed, epochs=epochs, version=model_version, install=install)
    _, _, card = load_model_folder(package)
    click.echo(format_card(card))
    click.echo(f"\npackage: {package.resolve()}" + ("  (installed into fiqa/score/default)" if install else ""))
