"""What the engine reports while it works: small frozen events for ``on_event``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from eleanor_cloud.models import StageStatus

__all__ = ["EngineEvent", "EventHandler", "EventKind", "chain_on_event"]

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


def chain_on_event(engine: Any, handler: EventHandler) -> None:
    """Call ``handler`` after the engine's current ``on_event`` handler, if any.

    For observers added after a factory built the engine (the CLI's printer, the AWS
    runners), which must not replace the factory's own handler. Uses the engine's
    assignable ``on_event`` property, or ``_on_event`` on an engine-like object without
    it (factories may return any duck-typed engine). The previous handler runs first;
    ``handler`` runs even if it raised.
    """
    attr = "on_event" if hasattr(engine, "on_event") else "_on_event"
    previous = getattr(engine, attr, None)
    if previous is None:
        setattr(engine, attr, handler)
        return

    def both(event: EngineEvent) -> None:
        try:
            previous(event)
        finally:
            handler(event)

    setattr(engine, attr, both)
