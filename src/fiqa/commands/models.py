"""``fiqa models [NAME] [--json]``: the quality models shipped with fiqa and the training-free methods, what each
needs, and the models' cards."""
from __future__ import annotations

import json

import click


@click.command("models")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the card as JSON (needs NAME).")
def command(name: str | None, as_json: bool) -> None:
    """List the shipped quality models (`fiqa score --model NAME`) and the training-free methods (`fiqa score
    --method NAME`) with what each needs; with NAME, print a model's card (training data, labeller, recipe, figures
    and the reject-threshold table: score threshold -> fraction rejected -> FNMR) or a method's description."""
    from fiqa.core.params import describe
    from fiqa.score import format_card, model_card
    from fiqa.score.packaged import MODELS, model_folder
    from fiqa.score.training_free import QUALITY_METHODS

    if name is not None and name in QUALITY_METHODS and name not in MODELS:
        if as_json:
            raise click.UsageError("--json prints a model's card; a training-free method has none")
        method = QUALITY_METHODS.entry(name)
        click.echo(f"{method.name}: {method.summary}")
        click.echo(f"  reference: {method.reference}")
        click.echo(f"  needs: {' or '.join(method.fields['needs'])}")
        click.echo(f"  higher is better: {'yes' if method.fields['higher_is_better'] else 'no'}")
        for key, param in method.params.items():
            click.echo(f"  {key} = {param.default!r}: {param.meaning} Must be {describe(param.constraints)}.")
        return
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
        click.echo(f"  needs: {' or '.join(entry.fields['needs'])}; `fiqa score PATHS --model {entry.name}`")
    click.echo("`fiqa models NAME` prints a model's card, with the reject-threshold table.")
    click.echo("")
    click.echo("Training-free methods (no training, no labels; `fiqa score PATHS --method NAME`):")
    width = max(len(method.name) for method in QUALITY_METHODS.entries())
    for method in QUALITY_METHODS.entries():
        click.echo(f"{method.name:<{width}}  {method.summary}")
        click.echo(f"{'':<{width}}  needs: {' or '.join(method.fields['needs'])}; {method.reference}")
