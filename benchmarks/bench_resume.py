"""4. Resume scaling: ``StateStore.load_task`` of a task with N completed stages on the
moto server over HTTP, sequential (``max_workers=1``) against the default thread pool,
interleaved. Each store is new per round, as on a freshly started host."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from benchmarks._util import (
    REGION,
    RequestLog,
    by_operation,
    interleaved,
    median,
    new_bucket,
    summary,
    table,
)
from benchmarks.workload import BenchState, history_entry, new_task_id, stage_names


def _seed(url: str, client: Any, task_id: str, n: int) -> None:
    from eleanor_cloud import SimpleRecordsResult, StageStatus, TaskManifest, open_store
    from eleanor_cloud.clock import format_ts, utc_now

    store = open_store(url, client=client)
    names = stage_names(n)
    store.create_manifest(TaskManifest(task_id=task_id, stages=tuple(names),
                                       state_class="benchmarks.workload.BenchState",
                                       created_at=format_ts(utc_now())))

    def one(name: str) -> None:
        store.create(BenchState(
            task_id=task_id, stage_name=name, status=StageStatus.COMPLETE, attempts=1,
            history=[history_entry(1, StageStatus.COMPLETE)],
            result=SimpleRecordsResult(total_count=1, success_count=1)))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, names))


def run(ns: list[int], rounds_for: dict[int, int], server_url: str) -> dict[str, Any]:
    import boto3

    from eleanor_cloud import open_store

    # botocore's default pool holds 10 connections: enough for the store's 8 threads.
    client = boto3.client("s3", endpoint_url=server_url, region_name=REGION)
    rows = []
    default_workers = open_store("memory://").max_workers
    for n in ns:
        bucket = new_bucket(client, f"resume{n}")
        url = f"s3://{bucket}/bench"
        task_id = new_task_id("resume")
        _seed(url, client, task_id, n)
        log = RequestLog().attach(client)
        loaded = open_store(url, client=client).load_task(task_id, BenchState)
        assert len(loaded) == n, (len(loaded), n)
        requests = by_operation(log.take())
        log.detach(client)

        def sequential(url: str = url, task_id: str = task_id) -> None:
            open_store(url, client=client, max_workers=1).load_task(task_id, BenchState)

        def concurrent(url: str = url, task_id: str = task_id) -> None:
            open_store(url, client=client).load_task(task_id, BenchState)

        rounds = rounds_for[n]
        times = interleaved({"sequential": sequential, "concurrent": concurrent}, rounds)
        seq, con = median(times["sequential"]), median(times["concurrent"])
        rows.append({
            "stages": n, "rounds": rounds, "requests": requests,
            "sequential": summary(times["sequential"]),
            "concurrent": summary(times["concurrent"]),
            "sequential_ms_per_stage": round(seq * 1000 / n, 3),
            "concurrent_ms_per_stage": round(con * 1000 / n, 3),
            "speedup": round(seq / con, 2),
        })
    return {"peer": "moto ThreadedMotoServer over HTTP", "default_max_workers": default_workers,
            "rows": rows, "targets": []}


def render(result: dict[str, Any]) -> str:
    rows = [[r["stages"], " ".join(f"{k}={v}" for k, v in r["requests"].items()), r["rounds"],
             r["sequential"]["median_ms"], r["concurrent"]["median_ms"],
             r["sequential_ms_per_stage"], r["concurrent_ms_per_stage"], r["speedup"]]
            for r in result["rows"]]
    return table(
        f"4. resume scaling: load_task, max_workers=1 vs default "
        f"({result['default_max_workers']}), {result['peer']}",
        ["N stages", "requests", "rounds", "sequential ms", "concurrent ms",
         "seq ms/stage", "conc ms/stage", "speed-up"], rows)
