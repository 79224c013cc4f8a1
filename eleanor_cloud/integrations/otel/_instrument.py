"""Trace one engine: :func:`instrument_engine` chains an :class:`.EngineTracer` after the
engine's own ``on_event`` and wraps its ``run()`` and ``run_shard()``.

Wrapping ``run()`` makes the task span cover binding and taking the lease too, and end
(with the exception's type) when a run is left by an exception the engine reports no
event for: a ``KeyboardInterrupt`` in a stage, ``LeaseLost``, ``LeaseHeld``. Each
``run_shard()`` is one span ``eleanor.shard.run``.
"""

from __future__ import annotations

import functools
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.trace import Status, StatusCode

from eleanor_cloud.engine.events import chain_on_event
from eleanor_cloud.integrations.otel._common import bounded, get_tracer
from eleanor_cloud.integrations.otel._engine import EngineTracer

__all__ = ["instrument_engine"]


def instrument_engine(
    engine: Any,
    *,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
) -> EngineTracer:
    """Trace ``engine``: chain an :class:`EngineTracer` after its ``on_event`` handler
    and wrap its ``run()`` and ``run_shard()`` (on this instance only). Calling it again
    on the same engine returns the tracer it already has."""
    existing = getattr(engine, "_eleanor_otel", None)
    if isinstance(existing, EngineTracer):
        return existing
    tracer = EngineTracer(
        engine.task_id, tracer_provider=tracer_provider, meter_provider=meter_provider
    )
    chain_on_event(engine, tracer.on_event)
    run, run_shard = engine.run, engine.run_shard
    spans = get_tracer(tracer_provider)

    @functools.wraps(run)
    def traced_run(*args: Any, **kwargs: Any) -> Any:
        with tracer.task_run():
            return run(*args, **kwargs)

    @functools.wraps(run_shard)
    def traced_run_shard(stage_name: str, shard_id: str, **kwargs: Any) -> Any:
        attrs = {
            "eleanor.task.id": engine.task_id,
            "eleanor.stage": stage_name,
            "eleanor.shard": shard_id,
        }
        with spans.start_as_current_span(
            "eleanor.shard.run",
            attributes=attrs,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                summary = run_shard(stage_name, shard_id, **kwargs)
            except BaseException as exc:
                span.set_attribute("error.type", type(exc).__name__)
                span.set_status(Status(StatusCode.ERROR, bounded(f"{type(exc).__name__}: {exc}")))
                raise
            span.set_attribute("eleanor.status", str(summary.status.value))
            span.set_attribute("eleanor.attempt", summary.attempts)
            if summary.message:
                span.set_attribute("eleanor.message", bounded(summary.message))
            return summary

    engine.run = traced_run
    engine.run_shard = traced_run_shard
    engine._eleanor_otel = tracer
    return tracer
