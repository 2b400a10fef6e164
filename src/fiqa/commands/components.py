"""``fiqa components [--profile [FILE]] [--json]``: the quality components, their units and mappings; the advice."""
from __future__ import annotations

import json

import click

from fiqa.commands._common import one_line


@click.command("components")
@click.option("--profile", "show_profile", is_flag=True,
              help="Print the advice profile instead (the shipped 'enrolment' one, or --advice-profile FILE checked).")
@click.option("--advice-profile", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="An advice profile to check and print (with --profile).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def command(show_profile: bool, advice_profile: str | None, as_json: bool) -> None:
    """List the quality components `fiqa score --components` measures (name, group, raw unit, 0-100 mapping,
    ISO/IEC 29794-5 name) and the advice codes with their texts."""
    from fiqa.components import ADVICE, describe_components, load_profile

    if advice_profile is not None and not show_profile:
        raise click.UsageError("--advice-profile needs --profile")
    if show_profile:
        profile = load_profile(advice_profile)
        if as_json:
            click.echo(json.dumps(profile.to_dict(), indent=2))
            return
        click.echo(one_line(f"{profile.name}: {profile.description} ({profile.source})"))  # a user's file
        for rule in profile.rules:
            bounds = " and ".join(part for part in (f"below {rule.min:g}" if rule.min is not None else "",
                                                    f"above {rule.max:g}" if rule.max is not None else "") if part)
            click.echo(f"  {rule.advice:16s} when {rule.component} is {bounds}")
        return
    described = describe_components()
    if as_json:
        click.echo(json.dumps({"components": described, "advice": ADVICE}, indent=2))
        return
    for name, info in described.items():
        iso = f" [ISO/IEC 29794-5: {info['iso']}]" if info["iso"] else ""
        model = f"\n  model: {info['model']}" if "model" in info else ""
        click.echo(f"{name} ({info['group']}){iso}\n  raw: {info['unit']}\n  0-100: {info['mapping']}{model}")
    click.echo("\nadvice codes:")
    for code, text in ADVICE.items():
        click.echo(f"  {code:16s} {text}")
