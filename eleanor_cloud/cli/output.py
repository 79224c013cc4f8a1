"""Rendering: rich tables and progress bars on a terminal, plain text otherwise.

rich is imported only when stdout is a terminal, so pipes, CI logs and ``--json`` pay
nothing for it and get stable, greppable lines (columns separated by two spaces).

Every human-readable string goes through :func:`~eleanor_cloud.cli.escaping.printable`
here, on its way out, because most of it quotes the store (messages, results, holders):
callers cannot forget it. rich markup is never parsed in such text either (it is
escaped, or passed as a ``Text``), so ``[red]`` in a message prints as ``[red]``.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from eleanor_cloud.cli.escaping import printable

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = [
    "Output",
    "PlainProgress",
    "Progress",
    "RichProgress",
    "status_style",
]

_STATUS_STYLES = {
    "COMPLETE": "green",
    "ERROR": "bold red",
    "CANCELED": "magenta",
    "RUNNING": "yellow",
    "RETRY": "yellow",
    "CREATED": "dim",
    "UNBOUND": "dim",
}


# DEL, C1 and lone surrogates: what json.dumps(ensure_ascii=False) leaves raw.
_RAW_IN_JSON = re.compile("[\x7f-\x9f\ud800-\udfff]")


def status_style(status: str) -> str:
    """The rich style of a status name (``""`` for unknown ones)."""
    return _STATUS_STYLES.get(status, "")


class Output:
    """Writes one command's output to stdout: JSON, a rich rendering, or plain text.

    ``tty`` defaults to whether stdout is a terminal; tests pass it explicitly.
    """

    def __init__(self, *, json_mode: bool = False, tty: bool | None = None) -> None:
        self.json_mode = json_mode
        self.tty = sys.stdout.isatty() if tty is None else tty
        self._console: Any = None

    @property
    def console(self) -> Any:
        """The rich Console (terminal only): imported on first use."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(highlight=False)
        return self._console

    def json(self, doc: BaseModel) -> None:
        """Print one JSON document (the ``--json`` output) and nothing else.

        ``doc`` is one of the models of :mod:`eleanor_cloud.cli.shapes`, so what is
        printed is what their published JSON Schema describes.
        """
        text = json.dumps(doc.model_dump(mode="json", by_alias=True), indent=2, ensure_ascii=False)
        # json escapes C0 controls but not DEL and C1 (a raw \x9b is a CSI to many
        # terminals) nor lone surrogates (unencodable: a crash). Outside strings JSON is
        # ASCII, so this rewrites string contents only, into escapes that decode to the
        # very same characters.
        sys.stdout.write(_RAW_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text) + "\n")
        sys.stdout.flush()

    def json_lines(self, values: Iterable[dict[str, Any]]) -> None:
        """Rows of a JSON Lines export (``--jsonl``), one compact object a line, escaped
        as :meth:`json` escapes; one write and one flush (a streamed listing's chunk)."""
        rows = (json.dumps(value, ensure_ascii=False, separators=(",", ":")) for value in values)
        text = "".join(row + "\n" for row in rows)
        sys.stdout.write(_RAW_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text))
        sys.stdout.flush()

    def lines(self, texts: Iterable[str]) -> None:
        """Lines of prose, as :meth:`line` prints them; without a terminal, one write and
        one flush (a streamed listing's chunk)."""
        if self.json_mode:
            return
        if self.tty:
            for text in texts:
                self.line(text)
            return
        sys.stdout.write("".join(printable(text) + "\n" for text in texts))
        sys.stdout.flush()

    def line(self, text: str = "", *, style: str | None = None) -> None:
        """Print a line of prose (suppressed in JSON mode so stdout stays parseable)."""
        if self.json_mode:
            return
        text = printable(text)
        if self.tty:
            from rich.markup import escape

            self.console.print(f"[{style}]{escape(text)}[/]" if style else escape(text))
        else:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()

    def table(
        self,
        columns: Sequence[str],
        rows: Sequence[Sequence[str]],
        *,
        title: str | None = None,
        status_column: int | None = None,
    ) -> None:
        """A table: rich on a terminal; aligned plain columns (header first) otherwise.

        ``status_column`` names the column whose values are stage statuses, coloured
        on a terminal.
        """
        if self.json_mode:
            return
        title = printable(title) if title else title
        rows = [[printable(cell) for cell in row] for row in rows]
        if self.tty:
            from rich.table import Table
            from rich.text import Text

            # Text, not str: a cell's "[...]" is data, never rich markup.
            table = Table(
                title=Text(title) if title else None, title_justify="left", header_style="bold"
            )
            for column in columns:
                table.add_column(column, overflow="fold")
            for row in rows:
                cells = [
                    Text(cell, style=status_style(cell) if i == status_column else "")
                    for i, cell in enumerate(row)
                ]
                table.add_row(*cells)
            self.console.print(table)
            return
        if title:
            sys.stdout.write(title + "\n")
        widths = [len(c) for c in columns]
        for row in rows:
            for i, cell in enumerate(row):
                widths[i] = max(widths[i], len(cell))
        for row in [list(columns), *rows]:
            padded = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
            sys.stdout.write("  ".join([*padded, row[-1]]).rstrip() + "\n")
        sys.stdout.flush()

    def progress(self, *, auto_refresh: bool = True) -> Progress:
        """A progress display for stages: bars on a terminal, plain lines otherwise.

        ``auto_refresh=False``: no refresh thread; the bars are redrawn on
        :meth:`RichProgress.refresh` and when a line is printed (for a process that
        forks: its only thread writing to the terminal is then one it controls).
        """
        if self.tty and not self.json_mode:
            return RichProgress(self.console, auto_refresh=auto_refresh)
        return PlainProgress(quiet=self.json_mode)


class Progress(Protocol):
    """What a running task reports to the screen."""

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def stage_started(self, stage: str, attempt: int, total: int) -> None: ...
    def advance(self, stage: str, done: int, total: int) -> None: ...
    def stage_finished(self, stage: str, status: str, message: str) -> None: ...
    def note(self, text: str, *, style: str | None = None) -> None: ...


class PlainProgress:
    """Progress as plain lines: one at each quarter of a stage, so logs stay short."""

    def __init__(self, *, quiet: bool = False) -> None:
        self.quiet = quiet
        self._last_quarter: dict[str, int] = {}

    def _write(self, text: str) -> None:
        if not self.quiet:
            # Flushed per line: a demo that kills itself must not lose what it printed.
            sys.stdout.write(printable(text) + "\n")
            sys.stdout.flush()

    def start(self) -> None:
        """Nothing to set up for plain lines."""

    def stop(self) -> None:
        """Nothing to tear down for plain lines."""

    def stage_started(self, stage: str, attempt: int, total: int) -> None:
        self._last_quarter[stage] = 0
        self._write(f"[{stage}] attempt {attempt}: started")

    def advance(self, stage: str, done: int, total: int) -> None:
        quarter = (4 * done) // total if total else 4
        if 0 < quarter < 4 and quarter > self._last_quarter.get(stage, 0):
            self._last_quarter[stage] = quarter
            self._write(f"[{stage}] {done}/{total} records")

    def stage_finished(self, stage: str, status: str, message: str) -> None:
        self._write(f"[{stage}] {status}" + (f": {message}" if message else ""))

    def note(self, text: str, *, style: str | None = None) -> None:
        self._write(text)


class RichProgress:
    """One rich progress bar per stage, with notes printed above the bars."""

    def __init__(self, console: Any, *, auto_refresh: bool = True) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.progress import Progress as _RichProgress

        self._console = console
        self._progress = _RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
            auto_refresh=auto_refresh,
        )
        self._bars: dict[str, Any] = {}

    def start(self) -> None:
        self._progress.start()

    def stop(self) -> None:
        self._progress.stop()

    # Bar descriptions are rich markup (TextColumn renders them so): stage names and
    # messages are escaped into it.
    def stage_started(self, stage: str, attempt: int, total: int) -> None:
        from rich.markup import escape

        description = f"{escape(printable(stage))} (attempt {attempt})"
        if stage in self._bars:
            self._progress.reset(self._bars[stage], total=total, description=description)
        else:
            self._bars[stage] = self._progress.add_task(description, total=total)

    def advance(self, stage: str, done: int, total: int) -> None:
        if stage in self._bars:
            self._progress.update(self._bars[stage], completed=done, total=total)

    def stage_finished(self, stage: str, status: str, message: str) -> None:
        from rich.markup import escape

        style = status_style(status) or "bold"
        text = f"[{style}]{escape(printable(status))}[/]" + (
            f": {escape(printable(message))}" if message else ""
        )
        name = escape(printable(stage))
        if stage in self._bars:
            self._progress.update(self._bars[stage], description=f"{name} {text}")
        else:
            self._progress.console.print(f"{name} {text}")

    def note(self, text: str, *, style: str | None = None) -> None:
        from rich.markup import escape

        text = escape(printable(text))
        self._progress.console.print(f"[{style}]{text}[/]" if style else text)

    # Bars that are not stages (a fanned-out stage's shards), by key.
    def bar(
        self, key: str, text: str, completed: int, total: int | None, *, style: str = ""
    ) -> None:
        """Show (or update) the bar ``key``: plain ``text`` (escaped here), ``completed``
        of ``total`` (``None``: not known yet)."""
        from rich.markup import escape

        description = escape(printable(text))
        description = f"[{style}]{description}[/]" if style else description
        if key in self._bars:
            bar = self._bars[key]
            self._progress.update(bar, description=description, completed=completed, total=total)
            if total is None:  # update() takes None as "unchanged": not known any more
                for task in self._progress.tasks:
                    if task.id == bar:
                        task.total = None
        else:
            self._bars[key] = self._progress.add_task(description, completed=completed, total=total)

    def has_bar(self, key: str) -> bool:
        return key in self._bars

    def drop(self, key: str) -> None:
        """Remove the bar ``key`` (keeps a display of many shards within the screen)."""
        if key in self._bars:
            self._progress.remove_task(self._bars.pop(key))

    def refresh(self) -> None:
        self._progress.refresh()
