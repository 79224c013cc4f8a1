"""Read commands: ``tasks``, ``status``, ``history``. They never write to the store."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from eleanor_cloud.cli import EXIT_FAILED
from eleanor_cloud.cli.app import CliContext, cli, fail, pass_cli, validate_task_id_arg
from eleanor_cloud.cli.output import Output

if TYPE_CHECKING:
    from eleanor_cloud.cli.views import LeaseView, TaskView
    from eleanor_cloud.store.state_store import StateStore

__all__ = ["render_lease", "render_task", "summarize_result"]

_STATUSES = ["UNBOUND", "CREATED", "RUNNING", "RETRY", "ERROR", "COMPLETE", "CANCELED"]
json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON document (see eleanor_cloud.cli.shapes).",
)


def short_ts(ts: str | None) -> str:
    """``2026-11-30T04:43:04.123456Z`` -> ``2026-11-30 04:43:04Z`` for tables."""
    if not ts:
        return "-"
    date, _, rest = ts.partition("T")
    return f"{date} {rest[:8]}Z" if rest else ts


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def duration(value: float) -> str:
    """``4.2s``, ``3m05s``, ``2h10m``, ``3d4h``: an age or a time left, at a glance."""
    value = abs(value)
    if value < 60:
        return f"{value:.1f}s"
    minutes, secs = divmod(int(value), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    return f"{hours // 24}d{hours % 24}h"


def summarize_result(result: Any, width: int = 60) -> str:
    """A stage result in one cell: SimpleRecordsResult counts, else compact JSON."""
    if result is None:
        return "-"
    if isinstance(result, dict) and "total_count" in result:
        return (
            f"total={result.get('total_count', 0)} ok={result.get('success_count', 0)} "
            f"fail={result.get('fail_count', 0)} "
            f"unprocessed={result.get('unprocessed_count', 0)}"
        )
    text = json.dumps(result, separators=(",", ":"), default=str)
    return text if len(text) <= width else text[: width - 3] + "..."


def render_lease(out: Output, lease: LeaseView | None) -> None:
    """One line about the lease: who holds it, which epoch, and until when."""
    if lease is None:
        out.line("lease: none (nobody has run this task yet, or it was deleted)")
        return
    value = lease.lease
    if value.released:
        state = "released: the task is free to run"
    elif lease.broken:
        state = "broken with lease --break: the next run takes over"
    elif lease.expired:
        state = f"expired {duration(lease.seconds_left)} ago: the next run takes over"
    else:
        state = f"live, {duration(lease.seconds_left)} left"
    out.line(
        f"lease: holder {value.holder}, epoch {value.epoch}, "
        f"expires {short_ts(value.expires_at)} ({state})"
    )


def render_task(out: Output, view: TaskView) -> None:
    """The ``status`` rendering: a header line, the stage table, the result, the lease."""
    current = view.current
    where = ""
    if current is not None:
        label = (
            "next stage"
            if view.next_stage
            else "failed stage"
            if view.status.value == "ERROR"
            else "canceled at"
        )
        where = f"{label}: {current.name}, "
    out.line(
        f"task {view.task_id}: {view.status.value}  ({where}updated {short_ts(view.updated_at)})",
        style="bold",
    )
    rows = [
        [
            s.name,
            s.status.value,
            str(s.attempts),
            seconds(s.last_run_seconds),
            short_ts(s.updated_at),
            s.last_message or "-",
            summarize_result(s.result),
        ]
        for s in view.stages
    ]
    out.table(
        ["STAGE", "STATUS", "ATTEMPTS", "LAST RUN", "UPDATED", "MESSAGE", "RESULT"],
        rows,
        status_column=1,
    )
    if view.result is not None:
        out.line(f"result: {summarize_result(view.result, width=200)}")
    if view.extra_stages:
        out.line(f"note: objects for stages not in the manifest: {', '.join(view.extra_stages)}")
    render_lease(out, view.lease)


def load_view(state: CliContext, task_id: str) -> TaskView:
    from eleanor_cloud.cli.views import load_task_view

    return load_task_view(state.store, task_id)


@cli.command("status")
@click.argument("task_id", callback=validate_task_id_arg)
@json_option
@pass_cli
def status_cmd(state: CliContext, task_id: str, as_json: bool) -> None:
    """Show TASK_ID's stages (status, attempts, last run, message, result) and lease.

    Exits 1 when the task is in ERROR or CANCELED, so scripts can test it.
    """
    from eleanor_cloud.cli.shapes import task_doc
    from eleanor_cloud.models import StageStatus

    out = Output(json_mode=as_json)
    view = load_view(state, task_id)
    if as_json:
        out.json(task_doc(view, state.store_description))
    else:
        render_task(out, view)
    if view.status in (StageStatus.ERROR, StageStatus.CANCELED):
        raise click.exceptions.Exit(EXIT_FAILED)


def _task_row(store: StateStore, task_id: str) -> dict[str, Any] | None:
    """One ``tasks`` row; ``None`` for a folder without a manifest (foreign, or deleted
    mid-listing); a task that cannot be decoded is a CORRUPT row, not a failed list."""
    from eleanor_cloud.cli.shapes import task_row_json
    from eleanor_cloud.cli.views import load_task_view
    from eleanor_cloud.errors import CorruptState, NotFound

    try:
        return task_row_json(load_task_view(store, task_id, with_lease=False))
    except NotFound:
        return None
    except CorruptState as exc:
        return {
            "task_id": task_id,
            "status": "CORRUPT",
            "current_stage": None,
            "attempts": 0,
            "total_attempts": 0,
            "stages": 0,
            "created_at": None,
            "updated_at": None,
            "error": str(exc),
        }


def _task_rows(
    store: StateStore, after: str | None, status: str | None, limit: int
) -> tuple[list[dict[str, Any]], bool]:
    """Up to ``limit`` rows after ``after`` (matching ``status``), and whether more ids
    follow. Ids stream from the listing; tasks load a chunk at a time, concurrently,
    so a page costs about one round trip per chunk instead of one per task."""
    from concurrent.futures import ThreadPoolExecutor
    from itertools import islice

    ids = (t for t in store.list_tasks() if after is None or t > after)
    rows: list[dict[str, Any]] = []
    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="eleanor-cli") as pool:
        while len(rows) < limit:
            # Without a filter exactly the rows still needed; with one, a full chunk.
            chunk = list(islice(ids, limit - len(rows) if status is None else 32))
            if not chunk:
                return rows, False
            for row in pool.map(lambda t: _task_row(store, t), chunk):
                if row is None or (status is not None and row["status"] != status):
                    continue
                if len(rows) == limit:
                    return rows, True  # a full page and a further match in this chunk
                rows.append(row)
    return rows, next(ids, None) is not None


@cli.command("tasks")
@click.option(
    "--status",
    "status_filter",
    type=click.Choice(_STATUSES, case_sensitive=False),
    help="Only tasks whose overall status is this.",
)
@click.option(
    "--limit",
    type=click.IntRange(1, 10_000),
    default=50,
    show_default=True,
    help="At most this many tasks.",
)
@click.option(
    "--after",
    metavar="TASK_ID",
    callback=validate_task_id_arg,
    help="Start after this task id (the previous page's last id).",
)
@json_option
@pass_cli
def tasks_cmd(
    state: CliContext, status_filter: str | None, limit: int, after: str | None, as_json: bool
) -> None:
    """List tasks with overall status, current stage, its attempts and last update.

    Task ids come in lexicographic order from a streamed listing, and only the page
    shown is loaded, so big stores stay cheap. The last line says how to get the next
    page.
    """
    from eleanor_cloud.cli.shapes import SCHEMA

    out = Output(json_mode=as_json)
    wanted = status_filter.upper() if status_filter else None
    rows, more = _task_rows(state.store, after, wanted, limit)
    next_after = rows[-1]["task_id"] if more and rows else None
    if as_json:
        out.json(
            {
                "schema": SCHEMA,
                "kind": "tasks",
                "store": state.store_description,
                "filter": {"status": wanted, "after": after, "limit": limit},
                "tasks": rows,
                "next_after": next_after,
            }
        )
        return
    if not rows:
        out.line(
            "no tasks"
            + (f" with status {wanted}" if wanted else "")
            + f" in {state.store_description}"
        )
        return
    out.table(
        ["TASK", "STATUS", "CURRENT STAGE", "ATTEMPTS", "UPDATED"],
        [
            [
                r["task_id"],
                r["status"],
                r["current_stage"] or "-",
                str(r["attempts"]),
                short_ts(r["updated_at"]),
            ]
            for r in rows
        ],
        status_column=1,
    )
    if next_after is not None:
        out.line(f"more tasks: eleanor-cloud tasks --after {next_after} --limit {limit}")


@cli.command("history")
@click.argument("task_id", callback=validate_task_id_arg)
@click.argument("stage", required=False)
@json_option
@pass_cli
def history_cmd(state: CliContext, task_id: str, stage: str | None, as_json: bool) -> None:
    """Show the run history of TASK_ID (of one STAGE when given): one row per attempt."""
    from eleanor_cloud.cli.shapes import history_doc

    out = Output(json_mode=as_json)
    view = load_view(state, task_id)
    if stage is not None and stage not in view.manifest.stages:
        fail(
            f"task {task_id!r} has no stage {stage!r} (stages: {', '.join(view.manifest.stages)})",
            EXIT_FAILED,
        )
    doc = history_doc(view, state.store_description, stage)
    if as_json:
        out.json(doc)
        return
    if not doc["entries"]:
        out.line(f"no history yet for task {task_id}" + (f" stage {stage}" if stage else ""))
        return
    out.table(
        ["STAGE", "ATTEMPT", "FROM", "TO", "BEGIN", "END", "RUN TIME", "MESSAGE"],
        [
            [
                e["stage"],
                str(e["attempt"]),
                e["begin_status"],
                e["end_status"],
                short_ts(e["begin_ts"]),
                short_ts(e["end_ts"]),
                seconds(e["run_time_seconds"]),
                e["message"],
            ]
            for e in doc["entries"]
        ],
        status_column=3,
    )
