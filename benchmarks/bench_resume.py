"""4. Resume scaling: ``StateStore.load_task`` of a task with N completed stages on the
moto server over HTTP, sequential (``max_workers=1``) against the default thread pool,
interleaved. Each store is new per round, as on a freshly started host."""

from __future__ import annotations

import time
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
    store.create_manifest(
        TaskManifest(
            task_id=task_id,
            stages=tuple(names),
            state_class="benchmarks.workload.BenchState",
            created_at=format_ts(utc_now()),
        )
    )

    def one(name: str) -> None:
        store.create(
            BenchState(
                task_id=task_id,
                stage_name=name,
                status=StageStatus.COMPLETE,
                attempts=1,
                history=[history_entry(1, StageStatus.COMPLETE)],
                result=SimpleRecordsResult(total_count=1, success_count=1),
            )
        )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, names))


def _measure(
    client: Any, url: str, task_id: str, n: int, rounds: int, rtt_ms: float
) -> dict[str, Any]:
    from eleanor_cloud import open_store

    def sequential() -> None:
        open_store(url, client=client, max_workers=1).load_task(task_id, BenchState)

    def concurrent() -> None:
        open_store(url, client=client).load_task(task_id, BenchState)

    times = interleaved({"sequential": sequential, "concurrent": concurrent}, rounds)
    seq, con = median(times["sequential"]), median(times["concurrent"])
    return {
        "stages": n,
        "added_rtt_ms": round(rtt_ms),
        "rounds": rounds,
        "sequential": summary(times["sequential"]),
        "concurrent": summary(times["concurrent"]),
        "sequential_ms_per_stage": round(seq * 1000 / n, 3),
        "concurrent_ms_per_stage": round(con * 1000 / n, 3),
        "speedup": round(seq / con, 2),
    }


def _with_rtt(server_url: str, rtt_ms: float) -> Any:
    """A client that waits ``rtt_ms`` before each request, as a real S3 round trip does.

    The wait is a sleep in the sending thread (it releases the GIL, like a socket wait),
    so concurrent requests overlap their waits exactly as they would on the network.
    """
    import boto3

    client = boto3.client("s3", endpoint_url=server_url, region_name=REGION)

    def wait(**_: Any) -> None:
        time.sleep(rtt_ms / 1000)

    client.meta.events.register("before-send.s3", wait)
    return client


def run(
    ns: list[int], rounds_for: dict[int, int], server_url: str, rtt: tuple[int, int, float]
) -> dict[str, Any]:
    """``rtt``: (N, rounds, milliseconds) of the extra row with a simulated round trip."""
    import boto3

    from eleanor_cloud import open_store

    # botocore's default pool holds 10 connections: enough for the store's 8 threads.
    client = boto3.client("s3", endpoint_url=server_url, region_name=REGION)
    rows = []
    default_workers = open_store("memory://").max_workers
    tasks: dict[int, tuple[str, str]] = {}
    for n in sorted({*ns, rtt[0]}):
        bucket = new_bucket(client, f"resume{n}")
        url, task_id = f"s3://{bucket}/bench", new_task_id("resume")
        _seed(url, client, task_id, n)
        tasks[n] = (url, task_id)
    for n in ns:
        url, task_id = tasks[n]
        log = RequestLog().attach(client)
        loaded = open_store(url, client=client).load_task(task_id, BenchState)
        assert len(loaded) == n, (len(loaded), n)
        requests = by_operation(log.take())
        log.detach(client)
        rows.append({**_measure(client, url, task_id, n, rounds_for[n], 0.0), "requests": requests})
    n, rounds, rtt_ms = rtt
    url, task_id = tasks[n]
    slow = _measure(_with_rtt(server_url, rtt_ms), url, task_id, n, rounds, rtt_ms)
    rows.append(
        {
            **slow,
            "requests": rows[[r["stages"] for r in rows].index(n)]["requests"] if n in ns else {},
        }
    )
    return {
        "peer": "moto ThreadedMotoServer over HTTP",
        "default_max_workers": default_workers,
        "rows": rows,
        "targets": [],
    }


def render(result: dict[str, Any]) -> str:
    rows = [
        [
            r["stages"],
            r["added_rtt_ms"],
            " ".join(f"{k}={v}" for k, v in r["requests"].items()),
            r["rounds"],
            r["sequential"]["median_ms"],
            r["concurrent"]["median_ms"],
            r["sequential_ms_per_stage"],
            r["concurrent_ms_per_stage"],
            r["speedup"],
        ]
        for r in result["rows"]
    ]
    return table(
        f"4. resume scaling: load_task, max_workers=1 vs default "
        f"({result['default_max_workers']}), {result['peer']}",
        [
            "N stages",
            "added RTT ms",
            "requests",
            "rounds",
            "sequential ms",
            "concurrent ms",
            "seq ms/stage",
            "conc ms/stage",
            "speed-up",
        ],
        rows,
    )
