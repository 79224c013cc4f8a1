"""OpenTelemetry test fixtures: a per-test SDK tracer and meter provider, in memory.

The providers are passed explicitly to the instrumentation: the global ones are never
set (the SDK refuses to override them, and warnings are errors here).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


@dataclass
class Telemetry:
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader

    @property
    def providers(self) -> dict[str, Any]:
        return {"tracer_provider": self.tracer_provider, "meter_provider": self.meter_provider}

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        found = list(self.exporter.get_finished_spans())
        return [s for s in found if name is None or s.name == name]

    def parent(self, span: ReadableSpan) -> ReadableSpan | None:
        if span.parent is None:
            return None
        for other in self.spans():
            if other.context.span_id == span.parent.span_id:
                return other
        return None

    def metric(self, name: str) -> dict[tuple[tuple[str, Any], ...], Any]:
        """Each data point of ``name``: sorted attributes -> value (sums) or count."""
        data = self.reader.get_metrics_data()
        points: dict[tuple[tuple[str, Any], ...], Any] = {}
        if data is None:
            return points
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name != name:
                        continue
                    for p in m.data.data_points:
                        key = tuple(sorted(p.attributes.items()))
                        points[key] = p.value if hasattr(p, "value") else p.count
        return points

    def total(self, name: str, **where: Any) -> Any:
        want = {f"eleanor.{k.replace('_', '.')}": v for k, v in where.items()}
        points = self.metric(f"eleanor.{name}")
        return sum(
            v for k, v in points.items() if all(dict(k).get(a) == b for a, b in want.items())
        )


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    yield Telemetry(tracer_provider, meter_provider, exporter, reader)
    tracer_provider.shutdown()
    meter_provider.shutdown()
