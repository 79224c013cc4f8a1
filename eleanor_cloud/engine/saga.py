"""Rollback and compensation: undo completed stages, last first, and reset them.

``TaskEngine.rollback(to_stage)`` and the automatic saga (``auto_rollback=True`` when a
task ends in ERROR) both end here; so does the store-only ``rollback_task``, which has
no stage code and so calls no ``rollback()``. Status changes come from
:func:`.transitions.reset`; this module only orders them and persists them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from eleanor_cloud.clock import Clock, format_ts
from eleanor_cloud.engine import transitions as tr
from eleanor_cloud.engine.attempt import remaining
from eleanor_cloud.engine.checkpoint import Checkpointer, RunState
from eleanor_cloud.engine.indexing import IndexWriter, status_after
from eleanor_cloud.engine.progress import Progress
from eleanor_cloud.engine.stage import StageContext
from eleanor_cloud.errors import InvalidState
from eleanor_cloud.models import StageStatus
from eleanor_cloud.store import documents
from eleanor_cloud.store.state_store import StateStore

__all__ = ["compensate", "reset_stages", "rollback_hook"]

_log = logging.getLogger("eleanor_cloud.engine")


def reset_stages(
    store: StateStore,
    run: RunState,
    task_id: str,
    names: Sequence[str],
    to_stage: str,
    *,
    clock: Clock,
    before_reset: Callable[[str, Any], None] | None = None,
) -> list[str]:
    """Reset stages from the last down to ``to_stage`` to CREATED; return those reset.

    COMPLETE stages get ``before_reset(name, state)`` first (the stage's rollback),
    then lose their result (see :func:`.transitions.reset` for the other statuses).
    The caller holds the lease; every write replaces the run's record at its epoch.
    """
    if to_stage not in names:
        raise InvalidState(f"task {task_id!r} has no stage {to_stage!r} (stages: {list(names)})")
    done: list[str] = []
    index = IndexWriter(store, task_id, clock)
    first = list(names).index(to_stage)
    for name in reversed(list(names)[first:]):
        state = run.states[name]
        new = tr.reset(state, now=format_ts(clock()), began=run.began.get(name))
        if new is None:
            continue
        if state.status is StageStatus.COMPLETE and before_reset is not None:
            before_reset(name, state)
        run.lease.check()
        before, after = status_after(run.states, run.states, name, new)
        base = run.records.get(name)
        write = partial(store.save, new, replaces=base, epoch=run.epoch)
        run.settle(index.around(before, after, write))
        _reset_progress(store, run, task_id, name)
        done.append(name)
        _log.info(
            "task %s stage %s: reset to CREATED (was %s)",
            task_id,
            name,
            state.status.value,
            extra={"task_id": task_id, "stage_name": name},
        )
    return done


def _reset_progress(store: StateStore, run: RunState, task_id: str, name: str) -> None:
    """A reset records stage starts over: its progress goes back to nothing (one GET,
    and a CAS only where a progress exists). Old failed chunks are left unreferenced."""
    current = documents.load_progress(store, task_id, name, Progress)
    if current is None:
        return
    fresh = Progress(task_id=task_id, stage_name=name)
    run.progress[name] = documents.save_progress(
        store, fresh, task_id=task_id, stage_name=name, replaces=current, epoch=run.epoch
    )


def rollback_hook(cp: Checkpointer, run: RunState) -> Callable[[str, Any], None]:
    """Calls the stage's own ``rollback()`` on a copy, under the lease."""
    spec = cp.spec

    def call(name: str, state: Any) -> None:
        stage = spec.stages[spec.stage_names.index(name)]
        run.lease.check()
        ctx = StageContext(
            task_id=spec.task_id,
            stage_name=name,
            attempt=state.attempts,
            logger=cp.reporter.log(name, state.attempts),
            stage_order=spec.stage_names,
            states=run.states,
            remaining_time=lambda: remaining(spec.clock, run),
            cancelled=lambda: run.lease.lost,
        )
        stage.rollback(state.model_copy(deep=True), ctx)
        cp.reporter.emit("stage_rolled_back", name, state.attempts, StageStatus.CREATED)

    return call


def compensate(cp: Checkpointer, run: RunState, failed_index: int) -> None:
    """Saga: roll back every COMPLETE stage before the failed one, last first."""
    spec = cp.spec
    names = spec.stage_names[:failed_index]
    first_complete = next((n for n in names if run.states[n].status is StageStatus.COMPLETE), None)
    if first_complete is None:
        return
    reset_stages(
        cp.store,
        run,
        spec.task_id,
        names,
        first_complete,
        clock=spec.clock,
        before_reset=rollback_hook(cp, run),
    )
