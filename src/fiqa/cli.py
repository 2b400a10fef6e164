"""The ``fiqa`` command: one subcommand per pipeline stage. Thin: parses arguments, calls the API.

Every subcommand also accepts ``-v``, ``-q`` and ``--no-progress`` (added here, at registration), so they work
before or after its name. Exit status: see :data:`fiqa.commands._common.EXIT_CODES`.
"""
from __future__ import annotations

import importlib
import pkgutil

import click

from fiqa import __version__
from fiqa.commands._common import EXIT_CODES, missing_extra, one_line, progress, shared_options
from fiqa.core.errors import FIQAError


class _Group(click.Group):
    """Turns FIQAError into a one-line "Error: ..." message and exit status 1 instead of a traceback, and so a
    missing module of an optional extra (PyTorch for training, scikit-learn for evaluation) into the command that
    installs it. Every error a command prints is one line: control characters in the names it quotes escaped."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except FIQAError as exc:  # one line: a file name in the message cannot fake another (one_line)
            raise click.ClickException(one_line(str(exc))) from exc
        except click.ClickException as exc:  # a command's own error or usage error may quote a path too
            setattr(exc, "message", one_line(exc.message))  # noqa: B010 (click's stubs mark it Final)
            raise
        except ModuleNotFoundError as exc:
            message = missing_extra(exc.name)
            if message is None:
                raise
            raise click.ClickException(message) from exc


def _invoke_quietly(command: click.Command) -> None:
    """Wrap ``command``'s callback so that it runs under the library's one progress switch, set from ``-q``,
    ``--no-progress`` and ``TQDM_DISABLE`` (:func:`fiqa.core.progress.progress_bars`): every bar of every stage
    follows it, also in stages that take no ``progress`` argument."""
    callback = command.callback
    if callback is None:
        return

    def run(*args, **kwargs):
        from fiqa.core.progress import progress_bars  # here, not at the top: ``fiqa --help`` loads no tqdm

        with progress_bars(progress()):
            return callback(*args, **kwargs)

    run.__doc__, run.__name__ = callback.__doc__, callback.__name__
    command.callback = run


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES)
@click.version_option(__version__, prog_name="fiqa")
def main() -> None:
    """Face image quality assessment: embed, label, train, score, evaluate.

    `fiqa score photo.jpg` needs nothing else: it scores with the shipped model. `fiqa evaluate` and `verify` need
    pip install 'fiqa[eval]'; `fiqa train` (and `curate --rounds`) need PyTorch: pip install 'fiqa[train]';
    `fiqa demo` needs both.
    """


def _register_commands() -> None:
    """Every module fiqa.commands.<name> (not starting with "_") exposes one click command called ``command``; each
    gets the shared options and the exit-status epilog."""
    from fiqa import commands

    main.params.extend(shared_options())
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        command = importlib.import_module(f"fiqa.commands.{info.name}").command
        names = {opt for param in command.params for opt in getattr(param, "opts", ())}
        command.params.extend(option for option in shared_options() if not names & set(option.opts))
        command.epilog = command.epilog or EXIT_CODES
        _invoke_quietly(command)
        main.add_command(command)


_register_commands()
