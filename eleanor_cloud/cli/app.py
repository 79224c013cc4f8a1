"""The click group: global options, store opening, and errors as one line + exit code.

Commands live in the command modules (``read``, ``manage``, ``running``, ``checking``), which know
nothing of this module: it imports them and adds their commands to the group, so the
registration runs one way. They import the engine, backends and rich inside their
functions, so ``eleanor-cloud --help`` loads only click and the package itself.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from eleanor_cloud.cli import checking, index_cmds, manage, read, running
from eleanor_cloud.cli.common import CliContext, echo_err
from eleanor_cloud.cli.escaping import printable
from eleanor_cloud.cli.exits import (
    EXIT_FAILED,
    EXIT_KEYBOARD_INTERRUPT,
    EXIT_USAGE,
    missing_extra_message,
)
from eleanor_cloud.errors import (
    BackendError,
    ConfigurationError,
    EleanorError,
    InvalidKey,
    InvalidState,
    TaskBindingError,
)
from eleanor_cloud.ui import command as ui_command

__all__ = ["cli"]

DEFAULT_STORE = ".eleanor"


def exit_code_for(exc: BaseException) -> int:
    """Usage errors (bad id, URL, option, missing extra) are 2; everything else 1."""
    if isinstance(exc, InvalidKey | InvalidState | ConfigurationError | TaskBindingError):
        return EXIT_USAGE
    return EXIT_FAILED


def describe(exc: BaseException, store_url: str | None) -> str:
    """One line naming what went wrong, and the store when the store was at fault."""
    if isinstance(exc, EleanorError):
        text = str(exc)
        if isinstance(exc, BackendError) and store_url and store_url not in text:
            text = f"{text} (store {store_url})"
        return text
    return f"unexpected {type(exc).__name__}: {exc}"


class EleanorGroup(click.Group):
    """Runs a command and turns expected failures into one stderr line and an exit code.

    ``--debug`` lets the exception (and its traceback) through instead, except for a
    missing ``cli`` extra (rich is imported only when a terminal needs it): that is an
    installation to fix, not a bug to debug.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            echo_err("eleanor-cloud: interrupted")
            raise click.exceptions.Exit(EXIT_KEYBOARD_INTERRUPT) from None
        except Exception as exc:
            hint = missing_extra_message(exc) if isinstance(exc, ModuleNotFoundError) else None
            if hint is not None:
                echo_err(hint)
                raise click.exceptions.Exit(EXIT_USAGE) from None
            state = ctx.find_object(CliContext)
            if state is not None and state.debug:
                raise
            more = "" if isinstance(exc, EleanorError) else " (run with --debug for details)"
            echo_err(
                f"eleanor-cloud: error: {describe(exc, state.store_url if state else None)}{more}"
            )
            raise click.exceptions.Exit(exit_code_for(exc)) from None


@click.group(
    cls=EleanorGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--store",
    "store_url",
    envvar="ELEANOR_STORE",
    default=DEFAULT_STORE,
    show_default=True,
    metavar="URL",
    help="Store URL: a directory, file:///dir, s3://bucket/prefix, memory://... "
    "(env ELEANOR_STORE).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(package_name="eleanor-cloud", prog_name="eleanor-cloud")
@click.pass_context
def cli(ctx: click.Context, store_url: str, debug: bool) -> None:
    """Inspect, run and repair tasks checkpointed by eleanor_cloud.

    Exit codes: 0 ok; 1 task failed/canceled, not found, or store failure; 2 usage
    error; 3 stopped by --time-budget with work left; 75/76 'run' stopped by SIGTERM
    (at a stage boundary / mid-stage; 'run --workers': 75 after Ctrl-C too, the shards
    checkpointed): run again to resume; 130 interrupted (Ctrl-C; twice for 'run
    --workers').
    """
    if not store_url:
        raise click.BadParameter("must not be empty", param_hint="--store")
    _configure_logging(debug)
    ctx.obj = CliContext(store_url, debug)


for _module in (read, manage, running, checking, index_cmds, ui_command):
    for _command in _module.COMMANDS:
        cli.add_command(_command)


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time (test runners swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            # Log messages quote holders, keys and exception text from the store.
            sys.stderr.write(printable(self.format(record)) + "\n")
        except Exception:  # noqa: BLE001 - logging must never break the command
            self.handleError(record)


def _configure_logging(debug: bool) -> None:
    """Library logs to stderr: everything with --debug, else errors only.

    What the engine logs as warnings (takeovers, interrupted attempts) the commands
    already show from its events; with no handler at all Python's last-resort handler
    would print them a second time. The logger's own level is left alone (records still
    propagate to the application's handlers) unless --debug asks for more.
    """
    logger = logging.getLogger("eleanor_cloud")
    handler = next((h for h in logger.handlers if isinstance(h, _StderrHandler)), None)
    if handler is None:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("eleanor-cloud: %(levelname)s: %(message)s"))
        logger.addHandler(handler)
    handler.setLevel(logging.DEBUG if debug else logging.ERROR)
    if debug:
        logger.setLevel(logging.DEBUG)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(cli.main())
