"""Fencing: after taking a lease over, make every version the old holder saw stale."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from eleanor_cloud.engine.lease import LeaseManager
from eleanor_cloud.engine.progress import Progress
from eleanor_cloud.errors import Conflict, LeaseLost, NotFound
from eleanor_cloud.models import BaseStageState, StageStatus
from eleanor_cloud.store import documents
from eleanor_cloud.store.records import Record
from eleanor_cloud.store.state_store import StateStore

__all__ = ["MAX_RACES", "fence_task", "open_progress", "open_records", "reload"]

S = TypeVar("S", bound="BaseStageState[Any]")
# Lost compare-and-swap races on one stage before giving up. Each loss means another
# party wrote that stage; only a handful of writers exist per task.
MAX_RACES = 50


def reload(store: StateStore, task_id: str, name: str, state_class: type[S]) -> Record[S] | None:
    try:
        return store.load_record(task_id, name, state_class)
    except NotFound:
        return None


def fence_task(
    store: StateStore,
    task_id: str,
    stage_names: Sequence[str],
    state_class: type[S],
    loaded: Mapping[str, Record[S]],
    *,
    epoch: int,
    floor: int = 0,
) -> dict[str, Record[S]]:
    """Re-write every stage object at ``epoch``; missing ones are created CREATED.

    Called right after taking an expired lease over. Every stage write is a
    compare-and-swap against the record its writer holds and every body is unique, so
    once each object has been rewritten, every record the old holder kept is stale:
    nothing it writes afterwards can land, not a state update, not a create. COMPLETE
    stages are rewritten too, because a rollback writes them. A race lost to the old
    holder (it wrote between our read and our write) is reloaded and retried; a newer
    epoch than ours means we were taken over ourselves (``LeaseLost``). An object at or
    below ``floor`` was left by a deleted incarnation of the task id: it is replaced by
    a fresh state, never taken as this task's.
    """
    fenced: dict[str, Record[S]] = {}
    for name in stage_names:
        record = loaded.get(name)
        for _ in range(MAX_RACES):
            if record is not None and record.epoch > epoch:
                raise LeaseLost(
                    f"task {task_id!r} stage {name!r} was written at epoch {record.epoch} "
                    f"by {record.writer!r}, newer than ours ({epoch})",
                    key=record.key,
                )
            fresh = state_class(task_id=task_id, stage_name=name, status=StageStatus.CREATED)
            try:
                if record is None:
                    fenced[name] = store.create(fresh, epoch=epoch)
                elif floor > 0 and record.epoch <= floor:  # left by a deleted task
                    fenced[name] = store.save(fresh, replaces=record, epoch=epoch)
                else:
                    fenced[name] = store.save(record.value, replaces=record, epoch=epoch)
                break
            except Conflict:
                record = reload(store, task_id, name, state_class)
        else:
            raise Conflict(
                f"task {task_id!r} stage {name!r}: fencing lost {MAX_RACES} races",
                key=store.stage_key(task_id, name),
                operation="fence",
            )
    return fenced


def open_records(
    store: StateStore,
    lease: LeaseManager,
    task_id: str,
    stage_names: Sequence[str],
    state_class: type[S],
    *,
    fresh: bool = False,
) -> tuple[dict[str, Record[S] | None], dict[str, str]]:
    """The records a new holder works from, right after ``lease.acquire()``, and when
    each stage's last write began (for an interrupted attempt's entry).

    Loads the states (not for a task this holder bound and leased first: nothing can
    exist) and fences when needed: after a takeover; when the lease object was missing
    on a task that has states (deleted by hand or expired by a lifecycle rule), after
    raising the lease above every stored epoch; when objects of a deleted incarnation
    lie at or below the lease's floor.
    """
    loaded: dict[str, Record[S]] = {}
    if not (fresh and lease.created):
        listed = store.load_task_records(task_id, state_class)
        loaded = {n: r for n, r in listed.items() if n in stage_names}
    floor = lease.lease.floor if lease.lease is not None else 0
    leftovers = floor > 0 and any(r.epoch <= floor for r in loaded.values())
    must_fence = lease.takeover or leftovers
    if lease.created and loaded:
        top = max(r.epoch for r in loaded.values())
        if top >= lease.epoch:
            lease.raise_epoch(top + 1)
        must_fence = True
    began = {n: r.written_at for n, r in loaded.items() if floor == 0 or r.epoch > floor}
    if must_fence:
        loaded = fence_task(
            store, task_id, stage_names, state_class, loaded, epoch=lease.epoch, floor=floor
        )
    return {n: loaded.get(n) for n in stage_names}, began


def open_progress(
    store: StateStore,
    lease: LeaseManager,
    task_id: str,
    records: Mapping[str, Record[Any] | None],
) -> dict[str, Record[Any] | None]:
    """The progress of every RUNNING stage (a records stage may have been suspended, or
    interrupted, mid-way), fenced after a takeover like the stage objects: rewritten at
    the new epoch, so a fenced-out holder can never move its cursor or counts."""
    out: dict[str, Record[Any] | None] = {}
    for name, record in records.items():
        if record is None or record.value.status is not StageStatus.RUNNING:
            continue
        current = documents.load_progress(store, task_id, name, Progress)
        if current is not None and lease.takeover:
            current = documents.save_progress(
                store,
                current.value,
                task_id=task_id,
                stage_name=name,
                replaces=current,
                epoch=lease.epoch,
            )
        out[name] = current
    return out
