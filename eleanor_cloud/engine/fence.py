"""Fencing: after taking a lease over, make every version the old holder saw stale."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from eleanor_cloud.errors import Conflict, LeaseLost, NotFound
from eleanor_cloud.models import BaseStageState, StageStatus
from eleanor_cloud.store.records import Record
from eleanor_cloud.store.state_store import StateStore

__all__ = ["MAX_RACES", "fence_task", "reload"]

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
) -> dict[str, Record[S]]:
    """Re-write every stage object at ``epoch``; missing ones are created CREATED.

    Called right after taking an expired lease over. Every stage write is a
    compare-and-swap against the record its writer holds and every body is unique, so
    once each object has been rewritten, every record the old holder kept is stale:
    nothing it writes afterwards can land, not a state update, not a create. COMPLETE
    stages are rewritten too, because a rollback writes them. A race lost to the old
    holder (it wrote between our read and our write) is reloaded and retried; a newer
    epoch than ours means we were taken over ourselves (``LeaseLost``).
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
            try:
                if record is None:
                    fresh = state_class(
                        task_id=task_id, stage_name=name, status=StageStatus.CREATED
                    )
                    fenced[name] = store.create(fresh, epoch=epoch)
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
