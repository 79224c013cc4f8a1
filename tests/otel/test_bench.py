"""The OpenTelemetry benchmark section runs and renders (its figures are timing, so
only their shape is checked here; `make bench` judges the targets)."""

from __future__ import annotations

from benchmarks import bench_otel


def test_the_benchmark_section_runs() -> None:
    result = bench_otel.run(3, 2)
    assert [r["variant"] for r in result["rows"]] == [
        "plain",
        "instrumented, API only (no SDK)",
        "instrumented, SDK in-memory export",
    ]
    assert result["requests_per_run"] >= 2 * 3 + 3
    # One span per request, plus the task run and one per stage attempt.
    assert result["spans_per_run"] == result["requests_per_run"] + 1 + 3
    assert len(result["targets"]) == 2
    assert "SDK in-memory export" in bench_otel.render(result)
