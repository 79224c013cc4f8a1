"""2. Overhead against the physical limit.

The same N-stage no-op task through eleanor_cloud versus a raw boto3 loop that replays
exactly the requests the engine sent (recorded once with ``before-send``): the same
conditional PUTs (``IfNoneMatch="*"`` / ``IfMatch=<etag>``) with bodies of the same
size, the same GETs and LISTs. The raw loop is the floor for those requests on this
peer; the ratio is what our serialization, validation, envelope, lease and bookkeeping
cost on top. Measured on the moto server over HTTP (the realistic case) and on moto
in-process (``mock_aws``: the network is nearly free, so our own CPU shows).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from benchmarks._util import (
    REGION,
    Request,
    RequestLog,
    by_operation,
    interleaved,
    median,
    new_bucket,
    paired_ratio,
    ratio,
    summary,
    table,
    target,
    warm_probe,
)
from benchmarks.workload import engine_label, new_task_id, run_task, stage_names

# Issue 18: wall and client CPU within 1.05x of the raw replay.
TARGET_RATIO = 1.05


def replay(client: Any, bucket: str, trace: list[Request], old_task: str, new_task: str) -> int:
    """Send the requests of ``trace`` for another task id, with plain boto3 calls.

    Returns how many were refused: a fresh run's trace has none, so anything else means
    the replay is not doing what the engine did (and the comparison would be void).
    """
    from botocore.exceptions import ClientError

    etags: dict[str, str] = {}
    bodies: dict[int, bytes] = {}
    refused = 0
    for req in trace:
        # Anywhere in the key: a task's own objects have it as a folder, an index
        # marker (``_index/status/<status>/<task>``) as the last segment.
        key = req.key.replace(old_task, new_task)
        if key == req.key:
            raise RuntimeError(f"replay: no task id {old_task!r} in key {req.key!r}")
        try:
            if req.operation == "PutObject":
                body = bodies.get(req.body_bytes)
                if body is None:
                    body = bodies[req.body_bytes] = b"x" * req.body_bytes
                args: dict[str, Any] = {
                    "Bucket": bucket,
                    "Key": key,
                    "Body": body,
                    "ContentType": "application/json",
                }
                if req.condition == "if-none-match":
                    args["IfNoneMatch"] = "*"
                elif req.condition == "if-match":
                    args["IfMatch"] = etags.get(key, '"0"')
                etags[key] = client.put_object(**args)["ETag"]
            elif req.operation == "GetObject":
                response = client.get_object(Bucket=bucket, Key=key)
                response["Body"].read()
                etags[key] = response["ETag"]
            elif req.operation == "ListObjectsV2":
                client.list_objects_v2(Bucket=bucket, Prefix=key)
            elif req.operation == "DeleteObject":
                extra = {"IfMatch": etags[key]} if req.condition == "if-match" else {}
                client.delete_object(Bucket=bucket, Key=key, **extra)
            else:
                raise RuntimeError(f"replay does not know {req.operation}")
        except ClientError:
            refused += 1  # a 404/412, as the engine may meet at this point of a resume
    return refused


def _measure(
    peer: str, make_client: Callable[[], Any], n_stages: int, rounds: int
) -> dict[str, Any]:
    from eleanor_cloud import open_store

    engine_client, raw_client = make_client(), make_client()
    bucket = new_bucket(engine_client, "overhead")
    names = stage_names(n_stages)
    warm_probe(open_store(f"s3://{bucket}/bench", client=engine_client))
    log = RequestLog().attach(engine_client)
    # The raw client carries the same counting hook: both sides pay it on every request
    # (like with like), and it proves the replay sent as many requests as the engine.
    raw_log = RequestLog().attach(raw_client)
    trace_task = new_task_id("trace")
    run_task(open_store(f"s3://{bucket}/bench", client=engine_client), trace_task, names)
    trace = log.take()
    counts: list[int] = []
    raw_counts: list[int] = []
    refused: list[int] = []

    def engine() -> None:
        run_task(
            open_store(f"s3://{bucket}/bench", client=engine_client), new_task_id("eng"), names
        )
        counts.append(len(log.take()))

    def raw() -> None:
        refused.append(replay(raw_client, bucket, trace, trace_task, new_task_id("raw")))
        raw_counts.append(len(raw_log.take()))

    cpu: dict[str, list[float]] = {}
    times = interleaved({"engine": engine, "raw": raw}, rounds, cpu=cpu)
    eng, base = median(times["engine"]), median(times["raw"])
    eng_cpu, base_cpu = median(cpu["engine"]), median(cpu["raw"])
    return {
        "peer": peer,
        "stages": n_stages,
        "rounds": rounds,
        "requests_per_run": len(trace),
        "requests_by_operation": by_operation(trace),
        # What the raw loop PUTs per run: the same sizes as the engine's bodies.
        "put_body_bytes_per_run": sum(r.body_bytes for r in trace if r.operation == "PutObject"),
        "request_count_stable": all(c == len(trace) for c in counts),
        "raw_request_count_matches": all(c == len(trace) for c in raw_counts),
        "raw_refused": sum(refused),  # must be 0: the raw loop did what the engine did
        "engine": summary(times["engine"]),
        "raw": summary(times["raw"]),
        "ratio": ratio(eng, base),
        "paired_ratio": paired_ratio(times["engine"], times["raw"]),
        "overhead_per_request_ms": round((eng - base) * 1000 / len(trace), 3),
        # This process's CPU (the HTTP server's is another process): our own cost.
        "engine_cpu_median_ms": round(eng_cpu * 1000, 3),
        "raw_cpu_median_ms": round(base_cpu * 1000, 3),
        "cpu_ratio": ratio(eng_cpu, base_cpu),
        "cpu_overhead_per_request_ms": round((eng_cpu - base_cpu) * 1000 / len(trace), 3),
    }


def run(n_stages: int, rounds: int, server_url: str) -> dict[str, Any]:
    import boto3
    from moto import mock_aws

    def http_client() -> Any:
        return boto3.client("s3", endpoint_url=server_url, region_name=REGION)

    def local_client() -> Any:
        return boto3.client("s3", region_name=REGION)

    rows = []
    peers: list[tuple[str, Callable[[], Any], Callable[[], AbstractContextManager[Any]]]] = [
        ("moto server, HTTP on 127.0.0.1", http_client, nullcontext),
        ("moto in-process (mock_aws)", local_client, mock_aws),
    ]
    for peer, make_client, context in peers:
        with context():
            rows.append(_measure(peer, make_client, n_stages, rounds))
    http = rows[0]
    targets = [
        target(
            "engine/raw wall, HTTP (ratio of medians)",
            f"<= {TARGET_RATIO}",
            http["ratio"],
            http["ratio"] <= TARGET_RATIO,
            f"{http['overhead_per_request_ms']} ms per request on top of raw; "
            f"paired {http['paired_ratio']}",
        ),
        target(
            "engine/raw client CPU, HTTP",
            f"<= {TARGET_RATIO}",
            http["cpu_ratio"],
            http["cpu_ratio"] <= TARGET_RATIO,
            f"{http['cpu_overhead_per_request_ms']} ms CPU per request on top of raw",
        ),
    ]
    return {"measured": engine_label(), "rows": rows, "targets": targets}


def render(result: dict[str, Any]) -> str:
    rows = [
        [
            r["peer"],
            r["stages"],
            r["requests_per_run"],
            r["rounds"],
            r["engine"]["median_ms"],
            r["raw"]["median_ms"],
            r["ratio"],
            r["paired_ratio"],
            r["overhead_per_request_ms"],
            r["engine_cpu_median_ms"],
            r["raw_cpu_median_ms"],
            r["cpu_ratio"],
        ]
        for r in result["rows"]
    ]
    return table(
        f"2. overhead vs raw boto3 replay of the same requests ({result['measured']})",
        [
            "peer",
            "stages",
            "requests",
            "rounds",
            "engine ms",
            "raw ms",
            "ratio",
            "paired ratio",
            "extra ms/req",
            "engine CPU ms",
            "raw CPU ms",
            "CPU ratio",
        ],
        rows,
    )
