"""How a fanned-out stage looks in ``status``: one line for the stage, and with
``--shards`` a table of at most :data:`MAX_ROWS` shards (the unfinished first).

Escaping of stored text (holders, messages) happens in
:class:`~eleanor_cloud.cli.output.Output`, as everywhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eleanor_cloud.models import StageStatus

if TYPE_CHECKING:
    from eleanor_cloud.cli.output import Output
    from eleanor_cloud.cli.shard_view import FanoutView, ShardView

__all__ = ["MAX_ROWS", "fanout_line", "render_fanout"]

MAX_ROWS = 50


def _count(n: int | None, unknown: str = "?") -> str:
    return unknown if n is None else f"{n:,}"


def fanout_line(task_id: str, stage: str, view: FanoutView) -> str:
    """``fan-out of load: 8 shards (plan 1a2b3c4d), 3 ended ...``: the stage's total."""
    shards = len(view.shards)
    plural = "s" if shards != 1 else ""
    head = f"fan-out of {stage}: {shards:,} shard{plural} (plan {view.plan.plan_id[:8]})"
    if not view.detailed:
        return (
            f"{head}: {view.ended:,} ended, {shards - view.ended:,} not ended; per shard: "
            f"eleanor-cloud status {task_id} --shards"
        )
    statuses = ", ".join(f"{n:,} {status}" for status, n in view.statuses().items())
    done, total = view.sum_of("done"), view.total
    ok, failed = _count(view.sum_of("ok")), _count(view.sum_of("fail"))
    parts = [
        f"{head}: {statuses}",
        f"{_count(done)}/{_count(total)} records (ok {ok}, fail {failed})",
    ]
    live = view.live_holders or 0
    if live:
        parts.append(f"{live:,} held by a live worker")
    return "; ".join(parts)


def _records(shard: ShardView) -> str:
    if shard.done is None and shard.total is None:
        return "-"
    return f"{_count(shard.done)}/{_count(shard.total)}"


def _note(shard: ShardView) -> str:
    if shard.error:
        return f"cannot be read: {shard.error}"
    if shard.suspended and not shard.ended:
        return "suspended: the next run resumes it"
    return shard.last_message or "-"


def _shown(view: FanoutView) -> list[ShardView]:
    """The unfinished shards first (where attention goes), each group in plan order."""
    return sorted(view.shards, key=lambda s: s.status(True) is StageStatus.COMPLETE)


def render_fanout(out: Output, task_id: str, stage: str, view: FanoutView) -> None:
    """The stage's line, then (detailed) the shard table, bounded to ``MAX_ROWS``."""
    out.line(fanout_line(task_id, stage, view))
    if not view.detailed:
        return
    shown = _shown(view)
    rows = [
        [
            s.id,
            (s.status(True) or StageStatus.CREATED).value,
            _records(s),
            _count(s.ok, "-"),
            _count(s.fail, "-"),
            str(s.state.attempts if s.state is not None else 0),
            s.holder or "-",
            _note(s),
        ]
        for s in shown[:MAX_ROWS]
    ]
    out.table(
        ["SHARD", "STATUS", "RECORDS", "OK", "FAIL", "ATTEMPTS", "HOLDER", "NOTE"],
        rows,
        title=f"shards of {stage}",
        status_column=1,
    )
    if len(shown) > MAX_ROWS:
        rest = shown[MAX_ROWS:]
        complete = sum(s.status(True) is StageStatus.COMPLETE for s in rest)
        out.line(
            f"... and {len(rest):,} more shards ({complete:,} COMPLETE); all of them: "
            f"eleanor-cloud status {task_id} --shards --json"
        )
