"""The Powertools benchmark section runs, and every request count is the documented one."""

from __future__ import annotations

from benchmarks import bench_powertools
from eleanor_cloud.backends.s3 import clear_probe_cache


def test_the_benchmark_section_runs_and_meets_its_request_targets(moto_server_url: str) -> None:
    clear_probe_cache()
    try:
        result = bench_powertools.run(2, moto_server_url)
    finally:
        clear_probe_cache()
    assert [t["name"] for t in result["targets"] if not t["met"]] == []
    assert "s3 repeat" in bench_powertools.render(result)
