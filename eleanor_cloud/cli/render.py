"""How a task looks in human-readable output: the stage table, the lease line, cells.

Shared by the read commands and by the commands that print the task after changing
or running it. Escaping of stored text happens in :class:`~eleanor_cloud.cli.output.Output`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from eleanor_cloud.cli.output import Output
    from eleanor_cloud.cli.progress_doc import CheckpointRow
    from eleanor_cloud.cli.views import LeaseView, StageView, TaskView

__all__ = [
    "checkpoint_line",
    "duration",
    "progress_line",
    "render_lease",
    "render_task",
    "seconds",
    "short_ts",
    "summarize_result",
]


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
    for stage in view.stages:
        line = progress_line(view.task_id, stage)
        if line is not None:
            out.line(line)
        if stage.fanout is not None:
            from eleanor_cloud.cli.shard_render import render_fanout

            render_fanout(out, view.task_id, stage.name, stage.fanout)
    if view.extra_stages:
        out.line(f"note: objects for stages not in the manifest: {', '.join(view.extra_stages)}")
    render_lease(out, view.lease)


def _plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else many or word + 's'}"


def progress_line(task_id: str, stage: StageView) -> str | None:
    """One line about a records stage's progress (``None`` for other stages)."""
    if stage.progress_error is not None:
        return f"progress of {stage.name}: cannot be read: {stage.progress_error}"
    view = stage.progress
    if view is None:
        return None
    p = view.progress
    total = view.total if view.total is not None else (p.offered if p.exhausted else None)
    if total is not None:
        head = f"{view.done:,}/{total:,} records"
    else:
        head = f"{view.done:,} records done of {p.offered:,} read so far (total unknown)"
    counts = f"ok {view.ok:,}, fail {view.fail:,}, unprocessed {view.unprocessed:,}"
    parts = [
        f"progress of {stage.name}: {head} ({counts})",
        f"last checkpoint {short_ts(view.checkpointed_at)}",
    ]
    if p.suspended:
        parts.append(f"suspended in attempt {p.attempt}: the next run resumes it from here")
    if view.retry_pending:
        parts.append(f"{_plural(view.retry_pending, 'failed record')} of earlier attempts to retry")
    if view.failed_ids:
        parts.append(
            f"{_plural(view.failed_ids, 'failed id')}: eleanor-cloud failed {task_id} {stage.name}"
        )
    return "; ".join(parts)


def checkpoint_line(row: CheckpointRow) -> str:
    """``load attempt 2: 3 slices, 12 checkpoints, 40 batches, 4,000 records, last ...``"""
    return (
        f"{row.stage} attempt {row.attempt}: {_plural(row.slices, 'slice')}, "
        f"{_plural(row.checkpoints, 'checkpoint')}, {_plural(row.batches, 'batch', 'batches')}, "
        f"{_plural(row.records, 'record')}, last {short_ts(row.last_at)}"
        + (" (suspended: the next run resumes it)" if row.suspended else "")
    )
