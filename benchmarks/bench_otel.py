"""OpenTelemetry: what instrumentation costs a warm N-stage run on memory://.

The same no-op task three ways, interleaved in one run: plain (not instrumented);
instrumented with no SDK installed as the providers (the OpenTelemetry API's no-op
tracer and meter: what a library user pays who installs the extra but exports
nothing); instrumented with the SDK, every span through a ``SimpleSpanProcessor`` into
an in-memory exporter and every metric into an ``InMemoryMetricReader`` (the
instrumentation's full cost without any network: a real exporter adds its own).
memory:// makes the requests nearly free, so this is the worst case in ratio terms:
on S3 the same absolute cost sits beside milliseconds per request. Medians of wall
time and this process's CPU time per run; ratios are against the plain run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from benchmarks._util import interleaved, median, paired_ratio, ratio, summary, table, target
from benchmarks.workload import BenchState, _noop_stage_class, new_task_id, stage_names

# Per-request cost of the SDK variant, in microseconds of CPU (spans + metric points).
TARGET_SDK_US_PER_REQUEST = 150.0
TARGET_NOOP_RATIO = 1.25


def _runner(names: list[str], instrument: Callable[[Any], Any] | None) -> Callable[[], int]:
    """A function that runs one fresh task; returns the number of store requests."""
    import eleanor_cloud as ec
    from eleanor_cloud.testing.conformance.wrappers import CountingBackend

    noop = _noop_stage_class()

    def once() -> int:
        counting = CountingBackend(ec.open_store("memory://").backend)
        store = ec.StateStore(counting, "bench")
        if instrument is not None:
            store = instrument(store)
        engine = ec.TaskEngine(new_task_id("otel"), [noop(n) for n in names], BenchState, store)
        if instrument is not None:
            instrument(engine)
        summary = engine.run()
        assert summary.status is ec.StageStatus.COMPLETE
        return sum(counting.calls.values())

    return once


def run(n_stages: int, rounds: int) -> dict[str, Any]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from eleanor_cloud.integrations.otel import instrument_engine, instrument_store

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    sdk = {"tracer_provider": tracer_provider, "meter_provider": meter_provider}

    def with_sdk(target: Any) -> Any:
        if isinstance(target, ec_state_store()):
            return instrument_store(target, **sdk)
        return instrument_engine(target, **sdk)

    def no_sdk(target: Any) -> Any:
        if isinstance(target, ec_state_store()):
            return instrument_store(target)
        return instrument_engine(target)

    names = stage_names(n_stages)
    plain, noop, full = _runner(names, None), _runner(names, no_sdk), _runner(names, with_sdk)
    requests: list[int] = []
    spans: list[int] = []

    def sdk_round() -> None:
        exporter.clear()
        requests.append(full())
        spans.append(len(exporter.get_finished_spans()))

    variants = {
        "plain": lambda: requests.append(plain()),
        "instrumented, API only (no SDK)": lambda: requests.append(noop()),
        "instrumented, SDK in-memory export": sdk_round,
    }
    cpu: dict[str, list[float]] = {}
    times = interleaved(variants, rounds, cpu=cpu)
    reader.get_metrics_data()  # the reader's collection is part of the SDK's cost, once
    tracer_provider.shutdown()
    meter_provider.shutdown()
    per_run = max(requests)
    base_wall, base_cpu = median(times["plain"]), median(cpu["plain"])
    rows = []
    for name in variants:
        wall, used = median(times[name]), median(cpu[name])
        rows.append(
            {
                "variant": name,
                "wall": summary(times[name]),
                "cpu_median_ms": round(used * 1000, 3),
                "wall_ratio": ratio(wall, base_wall),
                "paired_wall_ratio": paired_ratio(times[name], times["plain"]),
                "cpu_ratio": ratio(used, base_cpu),
                "extra_cpu_us_per_request": round((used - base_cpu) * 1e6 / per_run, 1),
            }
        )
    noop_row, sdk_row = rows[1], rows[2]
    targets = [
        target(
            "instrumented, no SDK / plain: CPU (memory://)",
            f"<= {TARGET_NOOP_RATIO}",
            noop_row["cpu_ratio"],
            noop_row["cpu_ratio"] <= TARGET_NOOP_RATIO,
            f"{noop_row['extra_cpu_us_per_request']} us CPU per request",
        ),
        target(
            "instrumented with SDK: extra CPU per store request",
            f"<= {TARGET_SDK_US_PER_REQUEST} us",
            sdk_row["extra_cpu_us_per_request"],
            sdk_row["extra_cpu_us_per_request"] <= TARGET_SDK_US_PER_REQUEST,
            f"{max(spans) if spans else 0} spans per run; wall ratio {sdk_row['wall_ratio']}",
        ),
    ]
    return {
        "stages": n_stages,
        "rounds": rounds,
        "requests_per_run": per_run,
        "spans_per_run": max(spans) if spans else 0,
        "rows": rows,
        "targets": targets,
    }


def ec_state_store() -> type[Any]:
    from eleanor_cloud import StateStore

    return StateStore


def render(result: dict[str, Any]) -> str:
    rows = [
        [
            r["variant"],
            r["wall"]["median_ms"],
            r["wall_ratio"],
            r["paired_wall_ratio"],
            r["cpu_median_ms"],
            r["cpu_ratio"],
            r["extra_cpu_us_per_request"],
        ]
        for r in result["rows"]
    ]
    return table(
        f"OpenTelemetry overhead: a warm {result['stages']}-stage run on memory:// "
        f"({result['requests_per_run']} requests, {result['spans_per_run']} spans with the "
        f"SDK, {result['rounds']} rounds)",
        [
            "variant",
            "wall ms",
            "wall ratio",
            "paired ratio",
            "CPU ms",
            "CPU ratio",
            "extra CPU us/req",
        ],
        rows,
    )
