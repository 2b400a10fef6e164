"""What every ``fiqa`` command shares: ``-v``/``-q``/``--no-progress`` (accepted before or after the subcommand),
output that honours them, table outputs whose format comes from the extension, and lazy help defaults.

Only click, the standard library and :mod:`fiqa.core.text` are imported here: ``fiqa --help`` loads every command
module.
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import click

# re-exported: every command escapes names through the core's two helpers
from fiqa.core.text import one_line as one_line
from fiqa.core.text import printable as printable

_VERBOSE, _QUIET, _NO_PROGRESS = "fiqa.verbose", "fiqa.quiet", "fiqa.no_progress"
EXTRAS: dict[str, dict[str, str]] = {
    "train": {"torch": "PyTorch", "scipy": "SciPy", "matplotlib": "matplotlib"},
    "eval": {"scipy": "SciPy", "sklearn": "scikit-learn", "matplotlib": "matplotlib"},
}
"""The modules of each optional extra of pyproject.toml that commands import (import name -> project name); the
base install is what scoring imports."""

EXIT_CODES = """\b
Exit status, every command:
  0  every input was processed, or recorded with a status and a reason
  1  nothing could be processed, or the command stopped on an error
     (printed as one "Error: ..." line)
  2  usage error: unknown option, missing or malformed argument"""


def _meta() -> dict[str, Any]:
    """``click.Context.meta`` of the running command (shared by the group and the subcommand); empty outside one."""
    ctx = click.get_current_context(silent=True)
    return ctx.meta if ctx is not None else {}


def _configure_logging() -> None:
    """The log level from every ``-v`` seen so far: warnings, then info (-v), then debug (-vv)."""
    verbose = _meta().get(_VERBOSE, 0)
    handler = logging.StreamHandler()
    handler.setFormatter(OneLineFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(handlers=[handler])  # the first call configures; later ones only set the level
    logging.getLogger().setLevel(logging.WARNING - 10 * min(verbose, 2))


def _count_verbose(ctx: click.Context, param: click.Parameter, value: int) -> None:
    if value:
        ctx.meta[_VERBOSE] = ctx.meta.get(_VERBOSE, 0) + value
    _configure_logging()


def _set_flag(key: str) -> Callable[[click.Context, click.Parameter, bool], None]:
    def callback(ctx: click.Context, param: click.Parameter, value: bool) -> None:
        if value:
            ctx.meta[key] = True
    return callback


def shared_options() -> list[click.Option]:
    """``-v``, ``-q`` and ``--no-progress`` as fresh parameters (one set per command, and one for the group): a
    flag given before the subcommand and one given after it both count."""
    return [
        click.Option(["-v", "--verbose"], count=True, expose_value=False, callback=_count_verbose,
                     help="More log output (-v info, -vv debug); before or after the command."),
        click.Option(["-q", "--quiet"], is_flag=True, expose_value=False, callback=_set_flag(_QUIET),
                     help="Only results, warnings and errors: no summary lines, no progress bars."),
        click.Option(["--no-progress"], is_flag=True, expose_value=False, callback=_set_flag(_NO_PROGRESS),
                     help="No progress bars (also when TQDM_DISABLE is set)."),
    ]


def quiet() -> bool:
    return bool(_meta().get(_QUIET))


def progress() -> bool:
    """Whether to draw progress bars: not with ``-q``, ``--no-progress``, or ``TQDM_DISABLE`` set (to anything but
    an empty string, 0, false, no or off). The command sets the library's switch from it once
    (:func:`fiqa.core.progress.progress_bars`, in ``fiqa.cli``)."""
    from fiqa.core.progress import allowed_by_environment  # tqdm: loaded once a command runs, not for --help

    return not (quiet() or _meta().get(_NO_PROGRESS)) and allowed_by_environment()


def info(message: str) -> None:
    """A summary line on stdout, unless ``-q``: one line, whatever names it holds (:func:`one_line` escapes a TAB,
    newline or escape sequence in a path); a blank line before it is ``info("")``."""
    if not quiet():
        click.echo(one_line(message))


def note(message: str) -> None:
    """A summary line on stderr (when stdout carries the results), unless ``-q``; one line, as :func:`info`."""
    if not quiet():
        click.echo(one_line(message), err=True)


def warn(message: str) -> None:
    """A warning on stderr, also under ``-q`` (one line: control characters escaped, :func:`one_line`)."""
    click.echo(f"Warning: {one_line(message)}", err=True)


class OneLineFormatter(logging.Formatter):
    """The log format of the ``fiqa`` command: each message on one line (:func:`one_line`); the library's log
    messages name files as they are."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return one_line(super().formatMessage(record))


def require_extra(what: str, *extras: str) -> None:
    """Stop with a one-line error naming the extras to install when a module of one of ``extras`` (keys of
    :data:`EXTRAS`) is not installed (exit status 1), e.g. "fiqa evaluate needs scikit-learn, which is not
    installed: pip install 'fiqa[eval]'".

    Called before any work, so that a command never embeds for minutes and then fails on the import.
    """
    for extra in extras:
        for module, project in EXTRAS[extra].items():
            if importlib.util.find_spec(module) is None:
                raise click.ClickException(f"{what} needs {project}, which is not installed: "
                                           f"pip install 'fiqa[{','.join(extras)}]'")


def require_torch(what: str) -> None:
    """:func:`require_extra` for the ``train`` extra (PyTorch, and what training plots and correlates with)."""
    require_extra(what, "train")


def missing_extra(module: str | None) -> str | None:
    """The message for a module that an import found missing, when it belongs to an extra ("this needs SciPy,
    which is not installed: pip install 'fiqa[eval]'"); None for any other module. A module of several extras
    names the evaluation extra, the lighter one."""
    top = (module or "").partition(".")[0]
    for extra in ("eval", "train"):
        if top in EXTRAS[extra]:
            return f"this needs {EXTRAS[extra][top]}, which is not installed: pip install 'fiqa[{extra}]'"
    return None


def out_option(help_text: str, *, required: bool = True, dest: str = "out", **kwargs: Any) -> Callable:
    """``-o/--out``, the same on every command that writes."""
    return click.option("-o", "--out", dest, required=required, help=help_text, **kwargs)


def engine_options(what: str) -> Callable:
    """``--engine local|ray`` and ``--ray-address``, the same on every command that can run on Ray (``what``: what
    either engine writes); :func:`check_engine` checks them together."""
    def decorate(function: Callable) -> Callable:
        function = click.option("--ray-address", default=None, metavar="ADDR",
                                help="With --engine ray: a running Ray cluster ('auto', 'host:6379', "
                                     "'ray://host:10001').")(function)
        return click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                            help="local: this process; ray: Ray Data actor pools (pip install 'fiqa[ray]'), on a Ray "
                                 f"instance started for this run or on --ray-address. Same {what} either way "
                                 "(docs/scale.md).")(function)
    return decorate


def check_engine(engine: str, ray_address: str | None, device: str) -> None:
    """Refuse (click usage error, exit status 2) ``--ray-address`` without ``--engine ray``, and a GPU with it."""
    if ray_address is not None and engine != "ray":
        raise click.UsageError("--ray-address needs --engine ray")
    if device != "cpu" and engine == "ray":
        raise click.UsageError("--device cuda needs --engine local (Ray workers are scheduled on CPUs)")


def device_option(what: str) -> Callable:
    """``--device cpu|cuda``, the same on every command that runs a network."""
    return click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
                        help=f"Where {what} runs; cuda needs the GPU build of onnxruntime and torch "
                             f"(pip install 'fiqa[cuda]').")


TABLE_OUT_HELP = ("Format from the extension: .parquet (with a .json sidecar; what later stages read), .csv or "
                  ".jsonl; '-' writes CSV to stdout.")


def check_out(out: str, *inputs: str | None) -> None:
    """Before any work, for every command that writes: refuse (exit status 1, one line naming both paths) an
    output equal to or inside one of the command's inputs (store, source, labels or scores tables, model folder;
    ``None``: an option not given). Table outputs go through :func:`check_table_out`, which applies it too."""
    from fiqa.core.outputs import check_not_in_inputs

    check_not_in_inputs(out, inputs)


def check_table_out(out: str, inputs: Sequence[str | None] = ()) -> None:
    """Before any work: not over an input, into a store, or over a file that is not a fiqa table (exit status 1,
    naming what it would overwrite), and a known table extension (else a usage error, exit status 2)."""
    from fiqa.core.errors import InvalidParameterError
    from fiqa.io.table import STDOUT, check_output, table_format

    if out != STDOUT:
        check_output(out, [p for p in inputs if p is not None and os.path.exists(p)])
    try:
        table_format(out)
    except InvalidParameterError as exc:
        raise click.BadParameter(f"{out!r} is not {exc.expected}", param_hint="'-o' / '--out'") from None


class LazyDefault:
    """A default read from a library constant only when needed (running the command or showing its own help), so
    that ``fiqa --help`` imports no heavy module: ``LazyDefault("fiqa.io.image", "DEFAULT_MAX_PIXELS")``;
    ``convert`` turns the constant into the option's value (``",".join`` for a list of names)."""

    def __init__(self, module: str, name: str, convert: Callable[[Any], Any] | None = None) -> None:
        self.module, self.name, self.convert = module, name, convert

    def __call__(self) -> Any:
        value = getattr(importlib.import_module(self.module), self.name)
        return value if self.convert is None else self.convert(value)

    def __str__(self) -> str:  # what click prints as "[default: ...]"
        return str(self())
