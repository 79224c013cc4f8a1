"""What the engine reports while it works: small frozen events for ``on_event``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from eleanor_cloud.models import StageStatus

__all__ = ["EngineEvent", "EventHandler", "EventKind", "Reporter", "chain_on_event"]

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
    "stage_checkpointed",
    "stage_suspended",
    "stage_resumed",
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
    the stage's (or, for task events, the task's) status after the event. ``batches``:
    for ``stage_checkpointed`` and ``stage_suspended`` (a records stage), the batches
    this run of the stage got through so far (0 on a suspension: nothing fitted).
    """

    kind: EventKind
    task_id: str
    stage_name: str | None = None
    attempt: int = 0
    status: StageStatus | None = None
    message: str = ""
    batches: int = 0


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


_LOGGER = logging.getLogger("eleanor_cloud.engine")


class Reporter:
    """Events to ``on_event`` and log records, both carrying task and stage.

    ``handler`` is assignable (``TaskEngine.on_event``); a handler that raises is
    logged and never breaks the run.
    """

    def __init__(self, task_id: str, handler: EventHandler | None = None) -> None:
        self.task_id = task_id
        self.handler = handler

    def log(
        self, stage_name: str | None = None, attempt: int | None = None
    ) -> logging.LoggerAdapter[logging.Logger]:
        extra: dict[str, Any] = {"task_id": self.task_id, "stage_name": stage_name}
        if attempt is not None:
            extra["attempt"] = attempt
        return logging.LoggerAdapter(_LOGGER, extra)

    def emit(
        self,
        kind: EventKind,
        stage_name: str | None = None,
        attempt: int = 0,
        status: StageStatus | None = None,
        message: str = "",
        batches: int = 0,
    ) -> None:
        event = EngineEvent(kind, self.task_id, stage_name, attempt, status, message, batches)
        extra = {"task_id": self.task_id, "stage_name": stage_name}
        _LOGGER.debug(
            "task %s stage %s: %s %s", self.task_id, stage_name, kind, message, extra=extra
        )
        handler = self.handler
        if handler is None:
            return
        try:
            handler(event)
        except Exception:
            _LOGGER.exception(
                "task %s: on_event handler failed for %s", self.task_id, kind, extra=extra
            )
