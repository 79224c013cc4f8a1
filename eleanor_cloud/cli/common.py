"""What every command module shares: the per-invocation context, errors, options.

Command modules import this module and never :mod:`eleanor_cloud.cli.app`: the app
imports the command modules to register them, so the dependency runs one way only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

import click

from eleanor_cloud.cli.escaping import printable
from eleanor_cloud.cli.exits import EXIT_FAILED, EXIT_USAGE
from eleanor_cloud.errors import InvalidKey

if TYPE_CHECKING:
    from eleanor_cloud.store.state_store import StateStore

__all__ = [
    "CliContext",
    "echo_err",
    "fail",
    "import_factory",
    "json_option",
    "pass_cli",
    "validate_task_id_arg",
]


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

json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON document (its JSON Schema: 'eleanor-cloud schema KIND').",
)


def echo_err(text: str) -> None:
    """One line on stderr, control characters escaped (it may quote stored data)."""
    click.echo(printable(text), err=True)


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """Print ``eleanor-cloud: error: message`` on stderr and exit with ``code``."""
    echo_err(f"eleanor-cloud: error: {message}")
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


def import_factory(spec: str) -> Any:
    """Import ``module:attribute`` (``module.sub:attr.inner`` allowed) from sys.path + cwd.

    The current directory is put on ``sys.path`` first, as ``python -m`` would, so a
    factory in a script next to the user's shell works.
    """
    import importlib
    import os
    import sys

    module_name, sep, attr_path = spec.partition(":")
    if not sep or not module_name or not attr_path:
        fail(f"factory {spec!r} is not MODULE:FACTORY (e.g. mypkg.tasks:build)", EXIT_USAGE)
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            fail(
                f"factory {spec!r}: no module named {exc.name!r} (looked in the current "
                "directory and sys.path)",
                EXIT_USAGE,
            )
        raise
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            fail(
                f"factory {spec!r}: module {module_name!r} has no attribute {attr_path!r}",
                EXIT_USAGE,
            )
    if not callable(obj):
        fail(f"factory {spec!r} is not callable", EXIT_USAGE)
    return obj
