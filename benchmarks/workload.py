"""The task every benchmark runs: N no-op stages sharing one state class.

``run_task`` goes through :class:`eleanor_cloud.TaskEngine` when the engine is
implemented, else through ``standin_run``: a small loop over ``StateStore`` that makes
the requests the design prescribes (manifest, lease, RUNNING + COMPLETE per stage,
release). ``ENGINE`` says which one this process measures; the JSON records it.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from typing import Any

from eleanor_cloud import (
    AlreadyExists,
    BaseStageState,
    Lease,
    SimpleRecordsResult,
    StageStateHistoryEntry,
    StageStatus,
    StateStore,
    TaskManifest,
)
from eleanor_cloud.clock import format_ts, utc_now


class BenchState(BaseStageState[SimpleRecordsResult]):
    """What a small real task would carry: a source and a counter."""

    source: str = "s3://raw/day=1"
    rows: int = 0


def stage_names(n: int) -> list[str]:
    return [f"stage-{i:04d}" for i in range(n)]


def new_task_id(label: str = "t") -> str:
    return f"{label}-{uuid.uuid4().hex[:12]}"


@functools.cache
def engine_available() -> bool:
    """Whether ``TaskEngine`` is implemented (the skeleton raises NotImplementedError)."""
    from eleanor_cloud import open_store

    try:
        _engine_run(open_store("memory://"), new_task_id("probe"), stage_names(1), None)
    except (ImportError, NotImplementedError):
        return False
    return True


def engine_label() -> str:
    return "TaskEngine" if engine_available() else "stand-in loop over StateStore"


@functools.cache
def _noop_stage_class() -> type[Any]:
    from eleanor_cloud.engine import BaseStage

    class Noop(BaseStage[BenchState]):
        def run(self, state: BenchState, ctx: Any) -> SimpleRecordsResult | None:
            if self.work is not None:
                self.work()
            return SimpleRecordsResult(total_count=1, success_count=1)

        work: Callable[[], Any] | None = None

    return Noop


def _engine_run(
    store: StateStore, task_id: str, names: list[str], work: Callable[[], Any] | None
) -> Any:
    from eleanor_cloud.engine import TaskEngine

    noop = _noop_stage_class()
    stages = []
    for name in names:
        stage = noop(name)
        stage.work = work
        stages.append(stage)
    engine = TaskEngine(task_id, stages, BenchState, store)
    return engine.run()


def run_task(
    store: StateStore, task_id: str, names: list[str], work: Callable[[], Any] | None = None
) -> Any:
    """Run (or resume) a task of no-op stages; ``work`` is called inside each stage."""
    if engine_available():
        return _engine_run(store, task_id, names, work)
    return standin_run(store, task_id, names, work)


def standin_run(
    store: StateStore, task_id: str, names: list[str], work: Callable[[], Any] | None = None
) -> dict[str, BenchState]:
    """The requests the design prescribes, without the engine's policy.

    Fresh task: manifest Create, lease Create, per stage RUNNING (Create) and COMPLETE
    (Replace), lease release (Replace) = 2N + 3. Resume: manifest GET, lease GET +
    Replace, 1 LIST + N GETs, release.
    """
    now = format_ts(utc_now())
    manifest = TaskManifest(
        task_id=task_id,
        stages=tuple(names),
        state_class=f"{BenchState.__module__}.BenchState",
        created_at=now,
    )
    states: dict[str, BenchState] = {}
    records: dict[str, Any] = {}  # what each stage's next write replaces
    try:
        store.create_manifest(manifest)
        fresh = True
    except AlreadyExists:
        store.load_manifest(task_id)
        fresh = False
    lease = Lease(
        task_id=task_id, holder="bench", epoch=1, acquired_at=now, expires_at=now, ttl_seconds=60.0
    )
    if fresh:
        held = store.write_lease(lease, replaces=None)
    else:
        current = store.load_lease(task_id)
        assert current is not None
        held = store.write_lease(
            lease.model_copy(update={"epoch": current.value.epoch + 1}), replaces=current
        )
        records = dict(store.load_task_records(task_id, BenchState))
        states = {n: r.value for n, r in records.items()}
    for name in names:
        state = states.get(name)
        if state is not None and state.status is StageStatus.COMPLETE:
            continue
        state = state or BenchState(task_id=task_id, stage_name=name, status=StageStatus.CREATED)
        begin_status, begin = state.status, utc_now()
        state.status, state.attempts = StageStatus.RUNNING, state.attempts + 1
        records[name] = store.save(state, replaces=records.get(name))
        if work is not None:
            work()
        end = utc_now()
        state.result = SimpleRecordsResult(total_count=1, success_count=1)
        state.status = StageStatus.COMPLETE
        state.history.append(
            StageStateHistoryEntry(
                attempt=state.attempts,
                begin_status=begin_status,
                begin_ts=format_ts(begin),
                end_status=StageStatus.COMPLETE,
                end_ts=format_ts(end),
                message="completed",
                run_time_seconds=(end - begin).total_seconds(),
            )
        )
        records[name] = store.save(state, replaces=records[name])
        states[name] = state
    store.write_lease(held.value.model_copy(update={"released": True}), replaces=held)
    return states


def history_entry(attempt: int, status: StageStatus = StageStatus.RETRY) -> StageStateHistoryEntry:
    """A realistic entry: what the engine writes for one failed attempt."""
    return StageStateHistoryEntry(
        attempt=attempt,
        begin_status=StageStatus.RUNNING,
        begin_ts="2026-11-30T04:45:00.123456Z",
        end_status=status,
        end_ts="2026-11-30T04:45:01.654321Z",
        message="ConnectionError: upstream API timed out after 30s",
        run_time_seconds=1.530865,
    )
