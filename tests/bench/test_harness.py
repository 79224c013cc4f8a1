"""The benchmark harness works: ``python -m benchmarks --quick`` runs every section and
writes the JSON. Timings are never asserted (they are noise on a shared CI machine);
request counts are deterministic, so their targets are."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = {
    "requests",
    "overhead",
    "cold_start",
    "resume",
    "history",
    "peer",
    "records",
    "fanout",
    "index",
    "powertools",
}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench") / "quick.json"
    # A subprocess: the harness starts its own moto server and mock_aws, and its
    # third-party warnings must not meet this suite's filterwarnings=error.
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--json", str(out)],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "targets met" in done.stdout
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def test_every_section_and_the_machine_are_reported(report: dict[str, Any]) -> None:
    assert set(report["sections"]) == SECTIONS
    meta = report["meta"]
    assert meta["quick"] is True
    for field in ("date", "nproc", "python", "cpu", "measured"):
        assert meta[field], field
    for name, section in report["sections"].items():
        assert isinstance(section.get("targets"), list), name


def test_uninterrupted_run_costs_at_most_2n_plus_4_requests_and_5_for_the_index(
    report: dict[str, Any],
) -> None:
    rows = report["sections"]["requests"]["rows"]
    assert [r["stages"] for r in rows] == [1, 10, 100]
    for row in rows:
        assert row["run_index"] == 5, row  # mark at bind, two moves; no stage costs more
        assert row["run_total"] <= 2 * row["stages"] + 4 + 5, row
        assert sum(row["run_by_operation"].values()) == row["run_total"]


def test_resume_is_one_list_and_at_most_n_stage_gets(report: dict[str, Any]) -> None:
    for row in report["sections"]["requests"]["rows"]:
        assert row["resume_list"] <= 1, row  # a finished task needs no LIST at all
        assert row["resume_stage_gets"] <= row["stages"], row
        assert row["resume_stage_writes"] == 0, row
    for row in report["sections"]["resume"]["rows"]:
        assert row["requests"] == {"GetObject": row["stages"], "ListObjectsV2": 1}, row


def test_request_count_targets_are_met(report: dict[str, Any]) -> None:
    for section in ("requests", "index"):
        targets = report["sections"][section]["targets"]
        assert targets and all(t["met"] for t in targets), targets


def test_the_index_lists_what_the_scan_lists_for_fewer_requests(report: dict[str, Any]) -> None:
    section = report["sections"]["index"]
    assert section["index_requests_per_run"] == {"3": 5, "10": 5}
    assert section["index"]["requests"] * 10 < section["scan"]["requests"]


def test_overhead_compares_the_same_requests(report: dict[str, Any]) -> None:
    for row in report["sections"]["overhead"]["rows"]:
        assert row["request_count_stable"], row
        assert row["raw_refused"] == 0, row  # the raw loop repeated the engine's requests
        assert row["raw_request_count_matches"], row  # and as many of them
        assert row["requests_per_run"] <= 2 * row["stages"] + 4 + 5, row  # +5: task index
        # The raw loop must send bodies of the engine's sizes, not empty ones.
        assert row["put_body_bytes_per_run"] >= 300 * row["requests_per_run"], row
        assert row["engine"]["median_ms"] > 0 and row["raw"]["median_ms"] > 0


def test_cold_start_and_import_facts(report: dict[str, Any]) -> None:
    section = report["sections"]["cold_start"]
    assert section["heavy_modules_loaded"] == []
    assert section["importtime"]["top_cumulative_us"]
    assert section["importtime"]["eleanor_cloud_cumulative_us"] > 0


def test_history_growth_is_reported(report: dict[str, Any]) -> None:
    section = report["sections"]["history"]
    sizes = [r["bytes"] for r in section["rows"]]
    assert sizes == sorted(sizes) and section["bytes_per_entry"] > 0
    assert section["bounded"] is False  # flip with the day the history gets a bound


def test_peer_request_counts_are_stable(report: dict[str, Any]) -> None:
    assert report["sections"]["peer"]["raw_refused"] == 0
    rows = {r["variant"]: r for r in report["sections"]["peer"]["rows"]}
    assert set(rows) == {
        "powertools first",
        "eleanor first",
        "powertools repeat",
        "eleanor repeat",
        "raw S3 replay of eleanor first",
    }
    for row in rows.values():
        assert row["request_count_stable"], row
    assert rows["eleanor first"]["requests"] <= 2 * 1 + 4 + 5  # +5: the task index


def test_records_checkpoints_are_counted_and_stay_small(report: dict[str, Any]) -> None:
    section = report["sections"]["records"]
    assert section["counts_correct"]  # the engine's counts: every record ok, once
    rows = {r["variant"]: r for r in section["rows"]}
    default, every = rows["records, default interval"], rows["records, every 1,000"]
    for row in (default, every):
        assert row["request_count_stable"], row
        assert row["progress_puts"] >= 1 and row["requests_per_1000"] > 0, row
    # More checkpoints, more progress PUTs: one per checkpoint plus the first write.
    assert every["checkpoints"] > default["checkpoints"] >= 1
    assert every["progress_puts"] - default["progress_puts"] == (
        every["checkpoints"] - default["checkpoints"]
    )
    failed = section["failed"]
    assert failed["fail_count"] == failed["records"]
    assert failed["chunks"] >= failed["records"] // 1000  # the ids went to chunk objects
    sizes = {t["name"]: t for t in section["targets"] if "failed records" in t["name"]}
    assert len(sizes) == 2 and all(t["met"] for t in sizes.values()), sizes


def test_fanout_joins_every_record_and_counts_requests_per_shard(report: dict[str, Any]) -> None:
    section = report["sections"]["fanout"]
    assert section["counts_correct"]  # every run joined all records, each success once
    assert [r["workers"] for r in section["rows"]] == [1, 2, 4, 8]
    requests = section["requests"]
    assert requests["plan_total"] > 0 and requests["join_total"] > 0
    # The workers' requests per shard (shared-memory counts of the forked processes)
    # match the step-by-step run's (small: no timer checkpoint fits in --quick).
    for row in section["rows"]:
        assert row["worker_requests_per_shard"] == requests["per_shard_total"], row
        assert row["records_per_s"] > 0 and row["wall"]["median_ms"] > 0
    by_object = {(r["object"], r["op"]): r for r in requests["rows"]}
    assert by_object[("done markers", "read")]["join"] == section["shards"]  # one GET each
    assert by_object[("plan", "write")]["plan"] == 1
