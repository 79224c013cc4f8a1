"""Observe a built engine's events without replacing the factory's own handler."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from eleanor_cloud.engine import EngineEvent

__all__ = ["chain_event_handler"]


def chain_event_handler(engine: Any, handler: Callable[[EngineEvent], None]) -> None:
    """Call ``handler`` after the engine's current ``on_event`` handler, if any.

    Uses the engine's assignable ``on_event`` property (``_on_event`` on an engine
    without it). The previous handler runs first; ``handler`` runs even if it raised.
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
