"""What the engine reports while it works: small frozen events for ``on_event``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from eleanor_cloud.models import StageStatus

__all__ = ["EngineEvent", "EventHandler", "EventKind"]

EventKind = Literal[
    "task_started",
    "lease_acquired",
    "lease_takeover",
    "lease_lost",
    "stage_started",
    "stage_completed",
    "stage_retry",
    "stage_failed",
    "stage_interrupted",
    "stage_canceled",
    "stage_rolled_back",
    "task_completed",
    "task_failed",
    "task_canceled",
    "task_paused",
]


@dataclass(frozen=True, slots=True)
class EngineEvent:
    """One thing that happened to a task.

    ``stage_name`` and ``attempt`` are ``None``/``0`` for task-level events; ``status`` is
    the stage's (or, for task events, the task's) status after the event.
    """

    kind: EventKind
    task_id: str
    stage_name: str | None = None
    attempt: int = 0
    status: StageStatus | None = None
    message: str = ""


EventHandler = Callable[[EngineEvent], None]
