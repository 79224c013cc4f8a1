"""The click group: global options, store opening, and errors as one line + exit code.

Commands live in sibling modules (``read``, ``manage``, ``running``) and import the
engine, backends and rich inside their functions, so ``eleanor-cloud --help`` loads
only click and the package itself.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from eleanor_cloud.cli import EXIT_FAILED, EXIT_KEYBOARD_INTERRUPT, EXIT_USAGE
from eleanor_cloud.errors import (
    BackendError,
    ConfigurationError,
    EleanorError,
    InvalidKey,
    InvalidState,
    TaskBindingError,
)

if TYPE_CHECKING:
    from eleanor_cloud.store.state_store import StateStore

__all__ = ["CliContext", "cli", "fail", "pass_cli", "validate_task_id_arg"]

DEFAULT_STORE = ".eleanor"
F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class CliContext:
    """Per-invocation settings; the store is opened on first use."""

    store_url: str
    debug: bool
    _store: StateStore | None = field(default=None, repr=False)

    @property
    def store(self) -> StateStore:
        if self._store is None:
            from eleanor_cloud.store.registry import open_store

            self._store = open_store(self.store_url)
        return self._store

    @property
    def store_description(self) -> str:
        return self.store.backend.description


pass_cli = click.make_pass_decorator(CliContext)


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


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """Print ``eleanor-cloud: error: message`` on stderr and exit with ``code``."""
    click.echo(f"eleanor-cloud: error: {message}", err=True)
    raise click.exceptions.Exit(code)


def validate_task_id_arg(_ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
    """Reject a bad task id before any I/O: one line naming the rule it broke, exit 2."""
    if value is None:
        return value
    from eleanor_cloud.keys import validate_task_id

    try:
        return validate_task_id(value)
    except InvalidKey as exc:
        fail(str(exc), EXIT_USAGE)


class EleanorGroup(click.Group):
    """Runs a command and turns expected failures into one stderr line and an exit code.

    ``--debug`` lets the exception (and its traceback) through instead.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("eleanor-cloud: interrupted", err=True)
            raise click.exceptions.Exit(EXIT_KEYBOARD_INTERRUPT) from None
        except Exception as exc:
            state = ctx.find_object(CliContext)
            if state is not None and state.debug:
                raise
            hint = "" if isinstance(exc, EleanorError) else " (run with --debug for details)"
            click.echo(
                f"eleanor-cloud: error: {describe(exc, state.store_url if state else None)}{hint}",
                err=True,
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
    (at a stage boundary / mid-stage): run again to resume.
    """
    if not store_url:
        raise click.BadParameter("must not be empty", param_hint="--store")
    _configure_logging(debug)
    ctx.obj = CliContext(store_url, debug)


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time (test runners swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
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


def _register() -> None:
    # Importing the command modules registers their commands on ``cli``.
    from eleanor_cloud.cli import manage, read, running  # noqa: F401


_register()

if __name__ == "__main__":  # pragma: no cover
    sys.exit(cli.main())
