"""Task operations that need only a store, not the stage code (what the CLI calls).

Every write is a compare-and-swap; a lost race reloads and re-applies. States are read
through ``state_class`` — :class:`AnyStageState` by default, which keeps user fields.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eleanor_cloud.engine.anystate import AnyStageState
from eleanor_cloud.engine.summary import TaskSummary
from eleanor_cloud.models import BaseStageState
from eleanor_cloud.store.state_store import StateStore

__all__ = ["cancel_task", "fence_task", "retry_failed_task", "rollback_task", "task_status"]


def task_status(store: StateStore, task_id: str,
                state_class: type[BaseStageState[Any]] = AnyStageState) -> TaskSummary:
    """Read-only summary of a bound task (``NotFound`` if it was never bound)."""
    raise NotImplementedError


def cancel_task(store: StateStore, task_id: str,
                state_class: type[BaseStageState[Any]] = AnyStageState) -> TaskSummary:
    """Move every stage in CANCELABLE_STATES to CANCELED (missing ones are created so)."""
    raise NotImplementedError


def retry_failed_task(store: StateStore, task_id: str,
                      state_class: type[BaseStageState[Any]] = AnyStageState) -> TaskSummary:
    """Redrive: ERROR stages become RETRY with a fresh attempt budget."""
    raise NotImplementedError


def rollback_task(store: StateStore, task_id: str, to_stage: str,
                  state_class: type[BaseStageState[Any]] = AnyStageState, *,
                  holder: str | None = None) -> TaskSummary:
    """Reset stages from ``to_stage`` on to CREATED without running any stage code."""
    raise NotImplementedError


def fence_task(store: StateStore, task_id: str, stage_names: Sequence[str],
               state_class: type[BaseStageState[Any]]) -> dict[str, Any]:
    """Re-write every stage object at ``store.epoch`` so older holders' versions go stale."""
    raise NotImplementedError
