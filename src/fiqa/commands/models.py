"""``fiqa models [NAME] [--json]``: the quality models shipped with fiqa, and their cards."""
from __future__ import annotations

import json

import click


@click.command("models")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the card as JSON (needs NAME).")
def command(name: str | None, as_json: bool) -> None:
    """List the shipped quality models; with NAME, print its card: training data, labeller, recipe, figures and
    the reject-threshold table (score threshold -> fraction rejected -> FNMR)."""
    from fiqa.score import format_card, model_card
    from fiqa.score.packaged import MODELS, model_folder

    if name is not None:
        card = model_card(name)
        click.echo(json.dumps(card, indent=2) if as_json else format_card(card))
        return
    if as_json:
        raise click.UsageError("--json needs a model NAME")
    rows = [("name", "version", "size", "labeller", "training data")]
    for entry in MODELS.entries():
        model = entry.name
        card = model_card(model)
        size = len(model_folder(model).joinpath(card["file"]).read_bytes())
        recogniser = card["recogniser"].get("name", "its recogniser")
        rows.append((model, card["version"], f"{size / 1024:.0f} KiB + {recogniser}", card["label_method"],
                     card["training_data"]["name"]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1])
    for entry in MODELS.entries():
        click.echo(f"{entry.name}: {entry.summary}")
    click.echo("`fiqa models NAME` prints a model's card, with the reject-threshold table.")
