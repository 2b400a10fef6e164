"""The ``fiqa`` command: one subcommand per pipeline stage. Thin: parses arguments, calls the API."""
from __future__ import annotations

import importlib
import logging
import pkgutil

import click

from fiqa import __version__
from fiqa.core.errors import FIQAError


class _Group(click.Group):
    """Turns FIQAError into a one-line "Error: ..." message and exit status 1 instead of a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except FIQAError as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fiqa")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """Face image quality assessment: embed, label, train, score, evaluate."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def _register_commands() -> None:
    """Every module fiqa.commands.<name> exposes one click command called ``command``."""
    from fiqa import commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        main.add_command(importlib.import_module(f"fiqa.commands.{info.name}").command)


_register_commands()
