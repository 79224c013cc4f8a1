"""1. Requests per run: an N-stage no-op task on S3 (moto over HTTP), counted per operation
with botocore ``before-send`` hooks; then a resume of the completed task from a fresh
store (another host: nothing cached)."""

from __future__ import annotations

from typing import Any

from benchmarks._util import (
    REGION,
    RequestLog,
    by_operation,
    is_task_object,
    new_bucket,
    table,
    target,
    warm_probe,
)
from benchmarks.workload import engine_label, new_task_id, run_task, stage_names


def run(ns: list[int], server_url: str) -> dict[str, Any]:
    import boto3

    from eleanor_cloud import open_store

    client = boto3.client("s3", endpoint_url=server_url, region_name=REGION)
    bucket = new_bucket(client, "requests")
    probe = warm_probe(open_store(f"s3://{bucket}/bench", client=client))
    log = RequestLog().attach(client)
    rows: list[dict[str, Any]] = []
    targets = []
    for n in ns:
        task_id, names = new_task_id("req"), stage_names(n)
        log.clear()
        run_task(open_store(f"s3://{bucket}/bench", client=client), task_id, names)
        fresh = log.take()
        # Resume as another host would: a new store, so no version is cached.
        run_task(open_store(f"s3://{bucket}/bench", client=client), task_id, names)
        resume = log.take()
        stage_reqs = [r for r in resume if not is_task_object(r.key)]
        task_reqs = [r for r in resume if is_task_object(r.key)]
        row: dict[str, Any] = {
            "stages": n,
            "run_total": len(fresh),
            "run_by_operation": by_operation(fresh),
            # 2N+4 for the run, +5 for the task index (mark at bind, two moves).
            "run_limit": 2 * n + 4 + 5,
            "run_index": sum("/_index/" in r.key for r in fresh),
            "resume_total": len(resume),
            "resume_list": sum(r.operation == "ListObjectsV2" for r in resume),
            "resume_stage_gets": sum(r.operation == "GetObject" for r in stage_reqs),
            "resume_stage_writes": sum(r.operation == "PutObject" for r in stage_reqs),
            "resume_manifest_lease": by_operation(task_reqs),
            "resume_manifest_lease_total": len(task_reqs),
        }
        rows.append(row)
        targets.append(
            target(
                f"run N={n}",
                "<= 2N+4 (+5 task index)",
                f"{len(fresh)} (limit {2 * n + 4 + 5}; index {row['run_index']})",
                len(fresh) <= 2 * n + 4 + 5,
            )
        )
        ok = (
            row["resume_list"] <= 1
            and row["resume_stage_gets"] <= n
            and row["resume_stage_writes"] == 0
        )
        targets.append(
            target(
                f"resume N={n}",
                "<= 1 LIST + <= N GETs, no stage writes",
                f"{row['resume_list']} LIST + {row['resume_stage_gets']} GET, "
                f"{row['resume_stage_writes']} stage PUT (+{len(task_reqs)} manifest/lease)",
                ok,
            )
        )
    return {
        "measured": engine_label(),
        "peer": "moto ThreadedMotoServer over HTTP",
        "rows": rows,
        # The S3 conditions probe: paid once per process and bucket, before the first
        # conditional write; the rows count steady-state runs after it.
        "probe_requests_once_per_process": probe,
        "targets": targets,
    }


def render(result: dict[str, Any]) -> str:
    def ops(counts: dict[str, int]) -> str:
        return " ".join(f"{k}={v}" for k, v in counts.items()) or "-"

    rows = [
        [
            r["stages"],
            r["run_total"],
            r["run_limit"],
            ops(r["run_by_operation"]),
            r["resume_list"],
            r["resume_stage_gets"],
            r["resume_stage_writes"],
            ops(r["resume_manifest_lease"]),
        ]
        for r in result["rows"]
    ]
    return table(
        f"1. requests per run ({result['measured']}; {result['peer']})",
        [
            "N stages",
            "run total",
            "limit 2N+4+5",
            "run by operation",
            "resume LIST",
            "resume stage GET",
            "resume stage PUT",
            "resume manifest+lease",
        ],
        rows,
    )
