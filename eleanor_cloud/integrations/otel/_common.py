"""What the store wrapper and the engine tracer share: names, bounds, instruments.

Only the OpenTelemetry *API* is imported: the application brings the SDK (or none, and
every call is a no-op).
"""

from __future__ import annotations

import threading

from opentelemetry import metrics, trace
from opentelemetry.trace import SpanContext

from eleanor_cloud import __version__

__all__ = [
    "LIBRARY",
    "MAX_MESSAGE",
    "active_run",
    "bounded",
    "forget_run",
    "get_meter",
    "get_tracer",
    "object_kind",
    "remember_run",
]

LIBRARY = "eleanor_cloud"
# Every free-text attribute (stage messages come from user code) is cut to this.
MAX_MESSAGE = 512


def bounded(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` cut to ``limit`` characters (an ellipsis marks a cut)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def get_tracer(provider: trace.TracerProvider | None) -> trace.Tracer:
    return trace.get_tracer(LIBRARY, __version__, tracer_provider=provider)


def get_meter(provider: metrics.MeterProvider | None) -> metrics.Meter:
    return metrics.get_meter(LIBRARY, __version__, meter_provider=provider)


def object_kind(key: str) -> str:
    """What a key holds, from the layout in ``eleanor_cloud.keys`` (a closed set)."""
    if "/_index/" in key or key.startswith("_index/"):
        return "index"
    name = key.rpartition("/")[2]
    if name == "_lease.json":
        return "lease"
    if name == "_task.json":
        return "manifest"
    if name == "progress.json":
        return "progress"
    if name == "plan.json":
        return "plan"
    if name.endswith(".jsonl"):
        return "failed"
    if "/done/" in key:
        return "done"
    if name.endswith(".json"):
        return "stage"  # a stage's (or a shard's) state
    return "other"


# The task-run span of each task running in this process, so that a store request made
# where no span is current (the lease renewer's thread) can link to it.
_RUNS: dict[str, SpanContext] = {}
_RUNS_LOCK = threading.Lock()


def remember_run(task_id: str, context: SpanContext) -> None:
    with _RUNS_LOCK:
        _RUNS[task_id] = context


def forget_run(task_id: str, context: SpanContext) -> None:
    with _RUNS_LOCK:
        if _RUNS.get(task_id) == context:
            del _RUNS[task_id]


def active_run(task_id: str | None) -> SpanContext | None:
    if task_id is None:
        return None
    return _RUNS.get(task_id)
