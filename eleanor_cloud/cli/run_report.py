"""What the commands that run a task print: the run's events as they happen, then the
task, and the exit code for it (0 COMPLETE, 1 ERROR/CANCELED, 3 work left)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from eleanor_cloud.cli.exits import EXIT_BUDGET, EXIT_FAILED, EXIT_OK, EXIT_STOPPED
from eleanor_cloud.cli.output import Output, Progress
from eleanor_cloud.cli.render import render_task

if TYPE_CHECKING:
    from eleanor_cloud.cli.common import CliContext
    from eleanor_cloud.engine import EngineEvent, TaskSummary
    from eleanor_cloud.models import StageStatus

__all__ = ["event_printer", "exit_code_of", "report"]

_FINISHED = {
    "stage_completed": "COMPLETE",
    "stage_retry": "RETRY",
    "stage_failed": "ERROR",
    "stage_canceled": "CANCELED",
}


def exit_code_of(status: StageStatus) -> int:
    """0 COMPLETE, 1 ERROR/CANCELED, 3 anything else (stopped with work left)."""
    if status.value == "COMPLETE":
        return EXIT_OK
    if status.value in ("ERROR", "CANCELED"):
        return EXIT_FAILED
    return EXIT_BUDGET


def event_printer(progress: Progress, *, default_total: int = 0) -> Callable[[EngineEvent], None]:
    """An ``on_event`` handler that shows what the engine does on ``progress``."""

    def on_event(event: EngineEvent) -> None:
        stage = event.stage_name or ""
        kind = event.kind
        if kind == "stage_started":
            progress.stage_started(stage, event.attempt, default_total)
        elif kind in _FINISHED:
            progress.stage_finished(stage, _FINISHED[kind], event.message)
        elif kind == "stage_interrupted":
            after = event.status.value if event.status is not None else "RETRY"
            progress.note(
                f"[{stage}] attempt {event.attempt} recorded as interrupted "
                f"(-> {after}): {event.message}",
                style="yellow",
            )
        elif kind == "stage_rolled_back":
            progress.note(
                f"[{stage}] rolled back" + (f": {event.message}" if event.message else "")
            )
        elif kind == "lease_takeover":
            progress.note(
                "took over the expired lease"
                + (f" ({event.message})" if event.message else "")
                + ": the previous holder is fenced out",
                style="yellow",
            )
        elif kind == "lease_lost":
            progress.note(f"lease lost: {event.message}", style="bold red")
        elif kind == "task_paused":
            progress.note(
                "stopped with work left" + (f": {event.message}" if event.message else ""),
                style="yellow",
            )

    return on_event


def report(
    out: Output,
    state: CliContext,
    task_id: str,
    action: str,
    summary: TaskSummary | None = None,
    *,
    with_shards: bool = False,
    stopped: str | None = None,
    fanout_hint: bool = False,
) -> int:
    """Print the task after a run (table or JSON); return the exit code for it.

    ``stopped``: a signal stopped the run with work left (exit 75, not 3), as this says.
    ``fanout_hint``: say how to run the shards of a fanned-out stage the run stopped at.
    """
    from eleanor_cloud.cli.shapes import task_doc
    from eleanor_cloud.cli.views import load_task_view

    view = load_task_view(state.store, task_id, with_shards=with_shards)
    # The run's own summary is authoritative (a cancel may land right after it).
    code = exit_code_of(summary.status if summary is not None else view.status)
    if stopped is not None and code == EXIT_BUDGET:
        code = EXIT_STOPPED
    if out.json_mode:
        out.json(task_doc(view, state.store_description, action=action, exit_code=code))
        return code
    out.line()
    render_task(out, view)
    if code in (EXIT_BUDGET, EXIT_STOPPED):
        why = stopped or (summary.message if summary is not None else "") or "time budget"
        out.line(
            f"stopped with work left ({why}): run again to resume at stage {view.next_stage}",
            style="yellow",
        )
        current = view.current
        if fanout_hint and current is not None and current.fanout is not None:
            out.line(
                f"stage {current.name} is fanned out: its shards run on any worker "
                "(TaskEngine.run_shard), or here with 'eleanor-cloud run ... --workers N'",
                style="yellow",
            )
    return code
