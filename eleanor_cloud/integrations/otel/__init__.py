"""OpenTelemetry spans and metrics for eleanor_cloud stores and engines.

::

    from eleanor_cloud.integrations.otel import instrument_engine, instrument_store

    store = instrument_store(ec.open_store("s3://my-bucket/checkpoints"))
    engine = ec.TaskEngine("job-42", stages, JobState, store, on_event=my_handler)
    instrument_engine(engine)          # chained after my_handler, never replacing it
    engine.run()

Spans: ``eleanor.task.run`` > ``eleanor.stage.attempt`` > ``eleanor.store.<op>``.
Metrics: ``eleanor.attempts``, ``eleanor.retries``, ``eleanor.checkpoint.duration``,
``eleanor.store.requests``, ``eleanor.store.duration``. Only the OpenTelemetry API is
used (the application installs the SDK and its exporters; pass ``tracer_provider=``/
``meter_provider=`` or rely on the global ones). Needs
``pip install 'eleanor-cloud[otel]'``; nothing else in eleanor_cloud imports this module.
See docs/otel.md for every name and attribute.
"""

from __future__ import annotations

from eleanor_cloud.errors import MissingDependency

try:
    import opentelemetry.metrics
    import opentelemetry.trace  # noqa: F401
except ModuleNotFoundError as _exc:  # pragma: no cover - exercised without the extra
    raise MissingDependency(
        f"OpenTelemetry instrumentation needs {_exc.name!r}: pip install 'eleanor-cloud[otel]'",
        install="eleanor-cloud[otel]",
    ) from _exc

from eleanor_cloud.integrations.otel._common import MAX_MESSAGE
from eleanor_cloud.integrations.otel._engine import MAX_SPAN_EVENTS, EngineTracer
from eleanor_cloud.integrations.otel._instrument import instrument_engine
from eleanor_cloud.integrations.otel._store import TracedBackend, instrument_store

__all__ = [
    "MAX_MESSAGE",
    "MAX_SPAN_EVENTS",
    "EngineTracer",
    "TracedBackend",
    "instrument_engine",
    "instrument_store",
]
