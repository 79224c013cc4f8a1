"""The benchmark's request counts, as a regression guard (docs/langgraph.md quotes them)."""

from __future__ import annotations

from benchmarks import bench_langgraph


def test_a_super_step_costs_three_puts_and_no_read(moto_server_url: str) -> None:
    result = bench_langgraph.run(1, moto_server_url, steps=3)
    fresh = result["fresh_run"]
    # 5 super-steps (input, __start__, 3 nodes): a checkpoint and a head PUT each, one
    # writes PUT per task that ran, and one GET: the head of the new thread (absent).
    assert fresh["by_object"] == {
        "checkpoint put": 5,
        "head get": 1,
        "head put": 5,
        "writes put": 4,
    }
    assert fresh["requests_per_superstep"] == 3.0
    assert result["resume"]["by_object"] == {
        "checkpoint get": 1,
        "checkpoint put": 1,
        "head get": 1,
        "head put": 1,
        "list listobjectsv2": 1,
        "writes get": 1,
        "writes put": 3,
    }
    assert "median ms" in bench_langgraph.render(result)
