"""12. The task index: ``tasks --status ERROR`` over N three-stage tasks (1% ERROR) on S3
(moto over HTTP), by a full scan and through the index, and what the index costs a run.

The tasks are seeded with the objects a run leaves (manifest, three stage states, the
task's index marker), written concurrently so 10,000 tasks seed in about a minute; the
listing is then made the way the CLI makes it (``eleanor_cloud.cli.task_list``).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from benchmarks._util import REGION, RequestLog, by_operation, new_bucket, table, target, warm_probe
from benchmarks.workload import new_task_id, run_task, stage_names

_STAGES = ("extract", "transform", "load")


def _seed(store: Any, n: int, error_every: int) -> list[str]:
    from eleanor_cloud.engine.anystate import AnyStageState
    from eleanor_cloud.models import StageStatus
    from eleanor_cloud.store import index_markers
    from eleanor_cloud.store.records import TaskManifest

    now = datetime.now(UTC)
    errors: list[str] = []

    def one(i: int) -> None:
        task_id = f"task-{i:06d}"
        failed = i % error_every == 0
        store.create_manifest(
            TaskManifest(
                task_id=task_id,
                stages=_STAGES,
                state_class="eleanor_cloud.engine.anystate.AnyStageState",
                created_at=now.isoformat(),
            )
        )
        for name in _STAGES:
            status = StageStatus.ERROR if failed and name == "load" else StageStatus.COMPLETE
            store.create(AnyStageState(task_id=task_id, stage_name=name, status=status, attempts=1))
        status = StageStatus.ERROR if failed else StageStatus.COMPLETE
        index_markers.put_marker(store, status, task_id, now)
        if failed:
            errors.append(task_id)

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(one, range(n)))
    return sorted(errors)


def _listing(
    store: Any, log: RequestLog, scan: bool
) -> tuple[list[str], int, float, dict[str, int]]:
    from eleanor_cloud.cli.task_list import task_rows
    from eleanor_cloud.models import StageStatus

    log.clear()
    start = time.perf_counter()
    found = task_rows(store, status=StageStatus.ERROR, after=None, limit=10_000, scan=scan)
    wall = time.perf_counter() - start
    sent = log.take()
    return [r.task_id for r in found.rows], len(sent), wall, by_operation(sent)


def run(n: int, server_url: str) -> dict[str, Any]:
    import boto3

    from eleanor_cloud import open_store

    client = boto3.client("s3", endpoint_url=server_url, region_name=REGION)
    bucket = new_bucket(client, "index")
    store = open_store(f"s3://{bucket}/ops", client=client)
    warm_probe(store)
    start = time.perf_counter()
    errors = _seed(store, n, 100)
    seed_seconds = time.perf_counter() - start
    log = RequestLog().attach(client)
    scan_ids, scan_requests, scan_wall, scan_ops = _listing(store, log, scan=True)
    index_ids, index_requests, index_wall, index_ops = _listing(store, log, scan=False)
    assert scan_ids == index_ids == errors, "the two listings disagree"

    # What the index costs a run: requests to _index/ keys for a fresh N-stage task.
    per_run: dict[int, int] = {}
    for stages in (3, 10):
        log.clear()
        run_task(
            open_store(f"s3://{bucket}/runs", client=client), new_task_id("ix"), stage_names(stages)
        )
        per_run[stages] = sum("/_index/" in r.key for r in log.take())
    changes = 3  # bound (CREATED), first stage starts (RUNNING), last ends (COMPLETE)
    per_change = per_run[3] / changes
    extra_stages = per_run[10] - per_run[3]
    return {
        "tasks": n,
        "errors": len(errors),
        "seed_seconds": round(seed_seconds, 1),
        "scan": {"requests": scan_requests, "wall_s": round(scan_wall, 3), "ops": scan_ops},
        "index": {"requests": index_requests, "wall_s": round(index_wall, 3), "ops": index_ops},
        "request_ratio": round(scan_requests / max(index_requests, 1), 1),
        "wall_ratio": round(scan_wall / max(index_wall, 1e-9), 1),
        "index_requests_per_run": per_run,
        "targets": [
            target(
                "index requests per status change",
                "<= 2",
                f"{per_change:.2f} ({per_run[3]} for {changes} changes)",
                per_change <= 2,
            ),
            target(
                "index requests per stage that changes no status",
                "0",
                f"{extra_stages} (N=10 vs N=3)",
                extra_stages == 0,
            ),
            target(
                f"tasks --status ERROR, {len(errors)} of {n}",
                "requests follow the matches",
                f"{index_requests} vs {scan_requests} by scan",
                index_requests <= 1 + 5 * len(errors) + n // 1000 + 1,
            ),
        ],
    }


def render(result: dict[str, Any]) -> str:
    def ops(counts: dict[str, int]) -> str:
        return " ".join(f"{k}={v}" for k, v in counts.items())

    rows = [
        [
            way,
            result[way]["requests"],
            f"{result[way]['wall_s']:.2f}",
            ops(result[way]["ops"]),
        ]
        for way in ("scan", "index")
    ]
    rows.append(["scan / index", f"{result['request_ratio']}x", f"{result['wall_ratio']}x", ""])
    return table(
        f"12. tasks --status ERROR over {result['tasks']} tasks ({result['errors']} ERROR; "
        f"moto over HTTP; seeded in {result['seed_seconds']} s); index requests per fresh "
        f"run: {result['index_requests_per_run']}",
        ["listing", "requests", "wall s", "by operation"],
        rows,
    )
