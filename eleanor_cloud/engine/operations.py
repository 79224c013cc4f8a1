"""Task operations that need only a store, not the stage code (what the CLI calls).

Each works on a private view of the caller's store (so the caller's cached versions
never move), writes only by compare-and-swap, and on a lost race reloads and
re-applies. States are read through ``state_class`` — :class:`AnyStageState` by
default, which keeps the user's fields so writing a state back loses nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from eleanor_cloud.backends.base import Replace
from eleanor_cloud.clock import Clock, format_ts, parse_ts, utc_now
from eleanor_cloud.engine.anystate import AnyStageState
from eleanor_cloud.engine.lease import LeaseManager, default_holder
from eleanor_cloud.engine.storeview import private_view
from eleanor_cloud.engine.summary import TaskSummary, summarize
from eleanor_cloud.errors import Conflict, InvalidState, LeaseLost, NotFound
from eleanor_cloud.models import (
    CANCELABLE_STATES,
    BaseStageState,
    StageStateHistoryEntry,
    StageStatus,
)
from eleanor_cloud.store.records import Record
from eleanor_cloud.store.state_store import StateStore

__all__ = [
    "cancel_task",
    "fence_task",
    "interrupted_entry",
    "reset_stages",
    "retry_failed_task",
    "rollback_task",
    "task_status",
]

# A string bound: subscripting a pydantic generic at import time builds a model class.
S = TypeVar("S", bound="BaseStageState[Any]")
_log = logging.getLogger("eleanor_cloud.engine")
# Lost compare-and-swap races on one stage before giving up. Each loss means another
# party wrote that stage; only a handful of writers exist per task.
_MAX_RACES = 50


def _extra(task_id: str, stage_name: str | None = None) -> dict[str, Any]:
    return {"task_id": task_id, "stage_name": stage_name}


def _load_all(
    view: StateStore, task_id: str, state_class: type[S]
) -> tuple[tuple[str, ...], dict[str, Record[S]]]:
    manifest = view.load_manifest(task_id)
    return manifest.stages, view.load_task_records(task_id, state_class)


def _reload(view: StateStore, task_id: str, name: str, state_class: type[S]) -> Record[S] | None:
    try:
        return view.load_record(task_id, name, state_class)
    except NotFound:
        return None


def _update_stage(
    view: StateStore,
    task_id: str,
    name: str,
    state_class: type[S],
    record: Record[S] | None,
    change: Callable[[S | None], S | None],
    *,
    epoch_floor: int = 0,
) -> Record[S] | None:
    """Apply ``change`` to one stage by CAS, reloading and re-applying on a lost race.

    ``change`` gets the current state (``None`` if there is no object) and returns the
    new state, or ``None`` to leave it alone. The write is stamped with the epoch of
    the record it replaces (or ``epoch_floor`` if higher): these operations hold no
    lease and must not look like an older holder to the one running.
    """
    for _ in range(_MAX_RACES):
        new = change(record.value if record else None)
        if new is None:
            return record
        view.epoch = max(epoch_floor, record.epoch if record else 0)
        try:
            if record is None:
                return view.create(new)
            return view.save(new, mode=Replace(record.version))
        except Conflict:
            record = _reload(view, task_id, name, state_class)
    raise Conflict(
        f"task {task_id!r} stage {name!r}: lost {_MAX_RACES} races in a row",
        key=view.stage_key(task_id, name),
        operation="update",
    )


def task_status(
    store: StateStore, task_id: str, state_class: type[BaseStageState[Any]] = AnyStageState
) -> TaskSummary:
    """Read-only summary of a bound task (``NotFound`` if it was never bound).

    Costs one GET (manifest), one LIST and one GET per stored stage.
    """
    view = private_view(store)
    names, records = _load_all(view, task_id, state_class)
    return summarize(task_id, names, {n: r.value for n, r in records.items()})


def cancel_task(
    store: StateStore, task_id: str, state_class: type[BaseStageState[Any]] = AnyStageState
) -> TaskSummary:
    """Move every stage in CANCELABLE_STATES to CANCELED; missing stages are created so.

    A running holder notices at its next write (its compare-and-swap fails and it finds
    CANCELED) or through ``ctx.cancelled``, and stops. Writes are stamped with the
    lease's epoch so the current holder recognises the cancel as not coming from an
    older holder. COMPLETE and ERROR stages are left as they are.
    """
    view = private_view(store)
    names, records = _load_all(view, task_id, state_class)
    lease = view.load_lease(task_id)
    floor = max(lease.value.epoch, lease.epoch) if lease else 0

    def cancel(name: str) -> Callable[[BaseStageState[Any] | None], BaseStageState[Any] | None]:
        def change(state: BaseStageState[Any] | None) -> BaseStageState[Any] | None:
            if state is None:
                return state_class(task_id=task_id, stage_name=name, status=StageStatus.CANCELED)
            if state.status not in CANCELABLE_STATES:
                return None
            return state.model_copy(update={"status": StageStatus.CANCELED})

        return change

    states: dict[str, BaseStageState[Any]] = {}
    for name in names:
        record = _update_stage(
            view, task_id, name, state_class, records.get(name), cancel(name), epoch_floor=floor
        )
        if record is not None:
            states[name] = record.value
    _log.info("task %s: canceled", task_id, extra=_extra(task_id))
    return summarize(task_id, names, states)


def retry_failed_task(
    store: StateStore, task_id: str, state_class: type[BaseStageState[Any]] = AnyStageState
) -> TaskSummary:
    """Redrive: every ERROR stage becomes RETRY with a fresh attempt budget.

    The budget is derived from history (see :mod:`eleanor_cloud.engine.retry`): the
    ERROR entry closes the stage's failed run, so the next run starts from zero. The
    history and ``attempts`` are kept. The next ``TaskEngine.run`` resumes the task.
    """
    view = private_view(store)
    names, records = _load_all(view, task_id, state_class)

    def redrive(state: BaseStageState[Any] | None) -> BaseStageState[Any] | None:
        if state is None or state.status is not StageStatus.ERROR:
            return None
        return state.model_copy(update={"status": StageStatus.RETRY})

    states: dict[str, BaseStageState[Any]] = {}
    for name in names:
        record = _update_stage(view, task_id, name, state_class, records.get(name), redrive)
        if record is not None:
            states[name] = record.value
    return summarize(task_id, names, states)


def interrupted_entry(
    state: BaseStageState[Any], *, began: str | None, now: str, end_status: StageStatus, detail: str
) -> StageStateHistoryEntry:
    """The history entry recording an attempt found RUNNING that nobody finished."""
    # The status before the lost attempt is not stored; the last entry says whether
    # the stage was being retried (RETRY/ERROR then redriven) or run afresh.
    prior = (
        StageStatus.RETRY
        if state.history and state.history[-1].end_status in (StageStatus.RETRY, StageStatus.ERROR)
        else StageStatus.CREATED
    )
    begin = began or now
    seconds = max(0.0, (parse_ts(now) - parse_ts(begin)).total_seconds())
    return StageStateHistoryEntry(
        attempt=state.attempts,
        begin_status=prior,
        begin_ts=begin,
        end_status=end_status,
        end_ts=now,
        message=f"interrupted: {detail}",
        run_time_seconds=seconds,
    )


def reset_stages(
    view: StateStore,
    task_id: str,
    names: Sequence[str],
    states: dict[str, S],
    to_stage: str,
    *,
    clock: Clock,
    began: Mapping[str, str] | None = None,
    before_reset: Callable[[str, S], None] | None = None,
) -> list[str]:
    """Reset stages from the last down to ``to_stage`` to CREATED; return those reset.

    COMPLETE stages get ``before_reset(name, state)`` first (the stage's rollback),
    then lose their result. RETRY and ERROR stages are reset too, so the task can run
    again; a RUNNING stage (an interrupted attempt: the caller holds the lease) first
    gets its history entry. CREATED and CANCELED stages are left alone. History and
    attempts are kept; the reset closes the stage's run, so it gets a fresh budget.
    The caller holds the lease and has set ``view.epoch``.
    """
    if to_stage not in names:
        raise InvalidState(f"task {task_id!r} has no stage {to_stage!r} (stages: {list(names)})")
    reset: list[str] = []
    first = list(names).index(to_stage)
    for name in reversed(list(names)[first:]):
        state = states[name]
        if state.status in (StageStatus.CREATED, StageStatus.UNBOUND, StageStatus.CANCELED):
            continue
        history = list(state.history)
        if state.status is StageStatus.RUNNING:
            history.append(
                interrupted_entry(
                    state,
                    began=(began or {}).get(name),
                    now=format_ts(clock()),
                    end_status=StageStatus.ERROR,
                    detail="found RUNNING during rollback",
                )
            )
        elif state.status is StageStatus.COMPLETE and before_reset is not None:
            before_reset(name, state)
        new = state.model_copy(
            update={"status": StageStatus.CREATED, "result": None, "history": history}
        )
        view.save(new)
        states[name] = new
        reset.append(name)
        _log.info(
            "task %s stage %s: reset to CREATED (was %s)",
            task_id,
            name,
            state.status.value,
            extra=_extra(task_id, name),
        )
    return reset


def rollback_task(
    store: StateStore,
    task_id: str,
    to_stage: str,
    state_class: type[BaseStageState[Any]] = AnyStageState,
    *,
    holder: str | None = None,
    lease_ttl: float = 60.0,
    clock: Clock = utc_now,
    sleep: Callable[[float], None] = time.sleep,
) -> TaskSummary:
    """Reset stages from the last down to ``to_stage`` to CREATED, running no stage code.

    For operators without the stage code (the CLI): the stages' own ``rollback`` is not
    called — use ``TaskEngine.rollback`` for that. Takes the lease (``LeaseHeld`` if a
    holder is running) and fences the task if it takes an expired lease over; a lease
    that looks expired is first watched for one TTL (see ``LeaseManager``), with ``sleep``.
    """
    view = private_view(store)
    manifest = view.load_manifest(task_id)
    if to_stage not in manifest.stages:
        raise InvalidState(
            f"task {task_id!r} has no stage {to_stage!r} (stages: {list(manifest.stages)})"
        )
    lease = LeaseManager(
        view, task_id, holder=holder or default_holder(), ttl=lease_ttl, clock=clock, sleep=sleep
    )  # a real wait: the watch measures time
    try:
        lease.acquire()
        view.epoch = lease.epoch
        records = view.load_task_records(task_id, state_class)
        began = {n: r.written_at for n, r in records.items()}
        if lease.takeover:
            records = fence_task(view, task_id, manifest.stages, state_class, records)
        states = {n: r.value for n, r in records.items()}
        for name in manifest.stages:
            states.setdefault(
                name, state_class(task_id=task_id, stage_name=name, status=StageStatus.CREATED)
            )
        reset_stages(view, task_id, manifest.stages, states, to_stage, clock=clock, began=began)
    finally:
        lease.release()
    return summarize(task_id, manifest.stages, states)


def fence_task(
    store: StateStore,
    task_id: str,
    stage_names: Sequence[str],
    state_class: type[S],
    loaded: Mapping[str, Record[S]] | None = None,
) -> dict[str, Record[S]]:
    """Re-write every stage object at ``store.epoch``; missing ones are created CREATED.

    Called right after taking an expired lease over. Every stage write is a
    compare-and-swap against the version its writer last saw and every body is unique,
    so once each object has been rewritten, every version the old holder cached is
    stale: nothing it writes afterwards can land — not a state update, not a create.
    COMPLETE stages are rewritten too, because a rollback writes them. A race lost to
    the old holder (it wrote between our read and our write) is reloaded and retried;
    a newer epoch than ours means we were taken over ourselves (``LeaseLost``).
    Returns the fenced records.
    """
    records = dict(loaded) if loaded is not None else store.load_task_records(task_id, state_class)
    fenced: dict[str, Record[S]] = {}
    for name in stage_names:
        record = records.get(name)
        for _ in range(_MAX_RACES):
            if record is not None and record.epoch > store.epoch:
                raise LeaseLost(
                    f"task {task_id!r} stage {name!r} was written at epoch {record.epoch} "
                    f"by {record.writer!r}, newer than ours ({store.epoch})",
                    key=record.key,
                )
            try:
                if record is None:
                    fenced[name] = store.create(
                        state_class(task_id=task_id, stage_name=name, status=StageStatus.CREATED)
                    )
                else:
                    fenced[name] = store.save(record.value, mode=Replace(record.version))
                break
            except Conflict:
                record = _reload(store, task_id, name, state_class)
        else:
            raise Conflict(
                f"task {task_id!r} stage {name!r}: fencing lost {_MAX_RACES} races",
                key=store.stage_key(task_id, name),
                operation="fence",
            )
    return fenced
