"""What the store wrapper and the engine tracer share: names, bounds, instruments.

Only the OpenTelemetry *API* is imported: the application brings the SDK (or none, and
every call is a no-op).
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.trace import SpanContext

from eleanor_cloud import __version__

__all__ = [
    "LIBRARY",
    "MAX_MESSAGE",
    "Instruments",
    "active_run",
    "bounded",
    "forget_run",
    "get_instruments",
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


# One tracer and one meter per provider (``None``: the global one), made once: an
# engine or a store per task (a Lambda invocation) must not register new instruments
# each time (the API's proxy meter keeps every one it was asked for).
_TRACERS: weakref.WeakKeyDictionary[Any, trace.Tracer] = weakref.WeakKeyDictionary()
_METERS: weakref.WeakKeyDictionary[Any, Instruments] = weakref.WeakKeyDictionary()
_GLOBAL: dict[str, Any] = {}
_CACHE_LOCK = threading.Lock()


class Instruments:
    """Every metric instrument of the integration, from one meter."""

    def __init__(self, meter: metrics.Meter) -> None:
        self.requests = meter.create_counter(
            "eleanor.store.requests",
            unit="{request}",
            description="Object store requests, by operation, outcome and object kind",
        )
        self.duration = meter.create_histogram(
            "eleanor.store.duration", unit="s", description="Object store request latency"
        )
        self.checkpoint = meter.create_histogram(
            "eleanor.checkpoint.duration",
            unit="s",
            description="Latency of a checkpoint write (a stage state or records progress)",
        )
        self.attempts = meter.create_counter(
            "eleanor.attempts",
            unit="{attempt}",
            description="Stage attempts that ended, by stage and outcome",
        )
        self.retries = meter.create_counter(
            "eleanor.retries",
            unit="{attempt}",
            description="Stage attempts that ended in RETRY (another attempt follows)",
        )


def get_tracer(provider: trace.TracerProvider | None) -> trace.Tracer:
    with _CACHE_LOCK:
        found = _GLOBAL.get("tracer") if provider is None else _TRACERS.get(provider)
        if found is None:
            found = trace.get_tracer(LIBRARY, __version__, tracer_provider=provider)
            if provider is None:
                _GLOBAL["tracer"] = found
            else:
                _TRACERS[provider] = found
        tracer: trace.Tracer = found
        return tracer


def get_instruments(provider: metrics.MeterProvider | None) -> Instruments:
    with _CACHE_LOCK:
        found = _GLOBAL.get("meter") if provider is None else _METERS.get(provider)
        if found is None:
            meter = metrics.get_meter(LIBRARY, __version__, meter_provider=provider)
            found = Instruments(meter)
            if provider is None:
                _GLOBAL["meter"] = found
            else:
                _METERS[provider] = found
        instruments: Instruments = found
        return instruments


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
