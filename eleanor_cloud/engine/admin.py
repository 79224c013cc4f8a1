"""Task operations that need only a store, not the stage code (what the CLI calls).

Each reads the records it changes and writes only by compare-and-swap against them;
on a lost race it reloads and re-applies. States are read through ``state_class``
(:class:`AnyStageState` by default, which keeps the user's fields so writing a state
back loses nothing). The status changes themselves are :mod:`.transitions`'.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from eleanor_cloud import keys
from eleanor_cloud.clock import Clock, utc_now
from eleanor_cloud.engine import transitions as tr
from eleanor_cloud.engine.anystate import AnyStageState
from eleanor_cloud.engine.checkpoint import RunState
from eleanor_cloud.engine.fence import MAX_RACES, open_records, reload
from eleanor_cloud.engine.indexing import IndexWriter, task_status_of
from eleanor_cloud.engine.lease import LeaseManager
from eleanor_cloud.engine.options import default_holder
from eleanor_cloud.engine.saga import reset_stages
from eleanor_cloud.engine.summary import TaskSummary, summarize
from eleanor_cloud.errors import Conflict, InvalidState, NotFound
from eleanor_cloud.keys import validate_task_id
from eleanor_cloud.models import BaseStageState, StageStatus
from eleanor_cloud.store.records import Record
from eleanor_cloud.store.state_store import StateStore

__all__ = ["cancel_task", "delete_task", "retry_failed_task", "rollback_task", "task_status"]

S = TypeVar("S", bound="BaseStageState[Any]")
_log = logging.getLogger("eleanor_cloud.engine")


def _load_all(
    store: StateStore, task_id: str, state_class: type[S]
) -> tuple[tuple[str, ...], dict[str, Record[S]]]:
    manifest = store.load_manifest(task_id)
    return manifest.stages, store.load_task_records(task_id, state_class)


def _update_stage(
    store: StateStore,
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
    for _ in range(MAX_RACES):
        new = change(record.value if record else None)
        if new is None:
            return record
        epoch = max(epoch_floor, record.epoch if record else 0)
        try:
            return store.save(new, replaces=record, epoch=epoch)
        except Conflict:
            record = reload(store, task_id, name, state_class)
    raise Conflict(
        f"task {task_id!r} stage {name!r}: lost {MAX_RACES} races in a row",
        key=store.stage_key(task_id, name),
        operation="update",
    )


def _update_all(
    store: StateStore,
    task_id: str,
    names: tuple[str, ...],
    state_class: type[S],
    records: dict[str, Record[S]],
    change_for: Callable[[str], Callable[[S | None], S | None]],
    *,
    epoch_floor: int = 0,
) -> dict[str, S]:
    """Apply each stage's change by CAS, the task index moved around the writes: the
    marker of the status the changes should give first, then (if races made it come
    out otherwise) the one they gave; see :mod:`.indexing`."""
    now = {n: r.value.status for n, r in records.items()}
    planned = dict(now)
    for name in names:
        current = records.get(name)
        new = change_for(name)(current.value if current else None)
        if new is not None:
            planned[name] = new.status
    before, expected = task_status_of(names, now), task_status_of(names, planned)

    def write_all() -> dict[str, S]:
        states: dict[str, S] = {}
        for name in names:
            record = _update_stage(
                store,
                task_id,
                name,
                state_class,
                records.get(name),
                change_for(name),
                epoch_floor=epoch_floor,
            )
            if record is not None:
                states[name] = record.value
        return states

    index = IndexWriter(store, task_id, utc_now)
    states = index.around(before, expected, write_all, single=False)
    index.moved(expected, task_status_of(names, {n: s.status for n, s in states.items()}))
    return states


def task_status(
    store: StateStore, task_id: str, state_class: type[BaseStageState[Any]] = AnyStageState
) -> TaskSummary:
    """Read-only summary of a bound task (``NotFound`` if it was never bound).

    Costs one GET (manifest), one LIST and one GET per stored stage.
    """
    names, records = _load_all(store, task_id, state_class)
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
    names, records = _load_all(store, task_id, state_class)
    lease = store.load_lease(task_id)
    floor = max(lease.value.epoch, lease.epoch) if lease else 0
    if lease is not None and 0 < lease.value.floor >= floor:
        # The id was deleted at that epoch: stamp above it, or the next holder would
        # take the cancel for a leftover of the deleted task.
        floor = lease.value.floor + 1

    def change_for(name: str) -> Callable[[Any], Any]:
        fresh = state_class(task_id=task_id, stage_name=name, status=StageStatus.CREATED)
        return lambda state: tr.cancel(state, fresh)

    states = _update_all(store, task_id, names, state_class, records, change_for, epoch_floor=floor)
    _log.info("task %s: canceled", task_id, extra={"task_id": task_id, "stage_name": None})
    return summarize(task_id, names, states)


def retry_failed_task(
    store: StateStore, task_id: str, state_class: type[BaseStageState[Any]] = AnyStageState
) -> TaskSummary:
    """Redrive: every ERROR stage becomes RETRY with a fresh attempt budget.

    The budget is derived from history (see :mod:`.transitions`): the ERROR entry closes
    the stage's failed run, so the next run starts from zero. The history and
    ``attempts`` are kept. The next ``TaskEngine.run`` resumes the task.
    """
    names, records = _load_all(store, task_id, state_class)
    states = _update_all(store, task_id, names, state_class, records, lambda _: tr.redrive)
    return summarize(task_id, names, states)


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
    called; use ``TaskEngine.rollback`` for that. Takes the lease (``LeaseHeld`` if a
    holder is running) and fences the task if it takes an expired lease over; a lease
    that looks expired is first watched for one TTL (see ``LeaseManager``), with ``sleep``.
    """
    manifest = store.load_manifest(task_id)
    if to_stage not in manifest.stages:
        raise InvalidState(
            f"task {task_id!r} has no stage {to_stage!r} (stages: {list(manifest.stages)})"
        )
    lease = LeaseManager(
        store, task_id, holder=holder or default_holder(), ttl=lease_ttl, clock=clock, sleep=sleep
    )  # a real wait: the watch measures time
    try:
        lease.acquire()
        records, began = open_records(store, lease, task_id, manifest.stages, state_class)
        states = {
            n: r.value
            if r is not None
            else state_class(task_id=task_id, stage_name=n, status=StageStatus.CREATED)
            for n, r in records.items()
        }
        run = RunState(lease, states, records, began)
        reset_stages(store, run, task_id, manifest.stages, to_stage, clock=clock)
    finally:
        lease.release()
    return summarize(task_id, manifest.stages, run.states)


def _status_before_delete(store: StateStore, task_id: str) -> StageStatus | None:
    """The status whose index marker a deletion removes (``None``: no manifest, so
    never marked). A stray marker elsewhere is a reader's to repair."""
    try:
        names, records = _load_all(store, task_id, AnyStageState)
    except NotFound:
        return None
    return task_status_of(names, {n: r.value.status for n, r in records.items()})


def delete_task(
    store: StateStore,
    task_id: str,
    *,
    holder: str | None = None,
    lease_ttl: float = 60.0,
    wait_for_lease: float = 0.0,
    clock_skew_tolerance: float = 5.0,
    clock: Clock = utc_now,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Delete a task safely; return how many objects were deleted.

    Takes the task's lease first, like any new holder: ``LeaseHeld`` while a holder is
    live; one that looks dead is watched for a TTL first. Then deletes every object but
    the lease and leaves the lease as a tombstone (broken, ``floor`` = this epoch), so
    epochs keep growing for the task id: a holder of the deleted task that wakes up
    later can neither update nor create anything the next task of that id will take as
    its own (the next holder fences, and resets whatever lies at or below the floor).
    ``NotFound`` if the task has no objects at all.
    """
    validate_task_id(task_id)
    if next(iter(store.backend.list(keys.task_prefix(store.prefix, task_id))), None) is None:
        raise NotFound(
            f"no task {task_id!r} in {store.backend.description}",
            key=store.manifest_key(task_id),
            operation="delete_task",
        )
    lease = LeaseManager(
        store,
        task_id,
        holder=holder or default_holder(),
        ttl=lease_ttl,
        clock=clock,
        sleep=sleep,
        wait=wait_for_lease,
        clock_skew_tolerance=clock_skew_tolerance,
    )
    try:
        lease.acquire()
        marked = _status_before_delete(store, task_id)
        count = store.delete_task(task_id)
        if marked is not None:
            IndexWriter(store, task_id, clock).gone(marked)
    except BaseException:
        lease.release()
        raise
    lease.release(tombstone=True)
    _log.info(
        "task %s: deleted (%d objects); lease kept as a tombstone at epoch %d",
        task_id,
        count,
        lease.epoch,
        extra={"task_id": task_id, "stage_name": None},
    )
    return count
