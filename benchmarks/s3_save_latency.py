"""S3 backend: requests per store operation, and the latency of one ``StateStore.save``
against one raw ``put_object(IfMatch=...)`` of a body of the same size, on the same moto
server (a separate process on 127.0.0.1), interleaved in the same run.

    .venv/bin/python -m benchmarks.s3_save_latency [--iterations 200]

Measures, never asserts: numbers on a shared laptop are only comparable within a run.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

for _name, _value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}.items():
    os.environ.setdefault(_name, _value)
for _name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
    os.environ.pop(_name, None)


@contextmanager
def moto_process() -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.05)  # polling a starting server, not synchronising a test
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def request_costs(url: str) -> dict[str, dict[str, int]]:
    from eleanor_cloud import open_store
    from eleanor_cloud.testing.conformance import CounterState

    store = open_store(f"s3://bench-{uuid.uuid4().hex[:12]}/runs", endpoint_url=url)
    client = store.backend.client  # type: ignore[attr-defined]
    client.create_bucket(Bucket=store.backend.bucket)  # type: ignore[attr-defined]
    sent: Counter[str] = Counter()
    client.meta.events.register("before-call.s3", lambda model, **_: sent.update([model.name]))
    costs: dict[str, dict[str, int]] = {}

    def measure(name: str, operation: Callable[[], Any]) -> None:
        sent.clear()
        operation()
        costs[name] = dict(sent)

    state = CounterState(task_id="job-1", stage_name="extract")
    created: dict[str, Any] = {}

    def create() -> None:
        created["record"] = store.create(state)

    measure("create", create)
    state.count = 1
    measure("save", lambda: store.save(state, replaces=created["record"]))
    measure("load", lambda: store.load("job-1", "extract", CounterState))
    store.create(CounterState(task_id="job-1", stage_name="load"))
    measure("load_task (2 stages)", lambda: store.load_task("job-1", CounterState))
    measure("list_tasks", lambda: list(store.list_tasks()))
    measure("delete", lambda: store.delete("job-1", "load"))
    return costs


def latencies(url: str, iterations: int, warmup: int = 20) -> dict[str, list[float]]:
    import boto3

    from eleanor_cloud import open_store
    from eleanor_cloud.testing.conformance import CounterState

    bucket = f"bench-{uuid.uuid4().hex[:12]}"
    store = open_store(f"s3://{bucket}/runs", endpoint_url=url)
    raw = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
    raw.create_bucket(Bucket=bucket)
    state = CounterState(task_id="job-1", stage_name="extract", note="x" * 200)
    record = store.create(state)
    body_size = len(store.backend.read(record.key)[0])
    raw_key = "raw/job-1/extract.json"
    etag = raw.put_object(Bucket=bucket, Key=raw_key, Body=b"0" * body_size)["ETag"]

    def save() -> None:
        nonlocal record
        state.count += 1
        record = store.save(state, replaces=record)

    # Distinct bodies made up front: the raw side pays for no serialization at all.
    bodies = iter(
        [uuid.uuid4().hex.encode().ljust(body_size, b"0") for _ in range(warmup + iterations)]
    )

    def put() -> None:
        nonlocal etag
        etag = raw.put_object(Bucket=bucket, Key=raw_key, Body=next(bodies), IfMatch=etag)["ETag"]

    # The store's own CPU per save (validation, envelope, JSON) with no I/O at all.
    mem = open_store("memory://bench")
    mem_state = state.model_copy()
    mem_record = mem.create(mem_state)

    def save_in_memory() -> None:
        nonlocal mem_record
        mem_state.count += 1
        mem_record = mem.save(mem_state, replaces=mem_record)

    timings: dict[str, list[float]] = {
        "store.save": [],
        "raw put_object(IfMatch)": [],
        "store.save on memory://": [],
    }
    pairs = [
        ("store.save", save),
        ("raw put_object(IfMatch)", put),
        ("store.save on memory://", save_in_memory),
    ]
    for i in range(warmup + iterations):
        # Alternate which goes first so drift and caching favour neither.
        for name, operation in pairs if i % 2 == 0 else pairs[::-1]:
            start = time.perf_counter()
            operation()
            elapsed = time.perf_counter() - start
            if i >= warmup:
                timings[name].append(elapsed * 1000)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200)
    args = parser.parse_args()
    with moto_process() as url:
        print("requests per store operation (S3 API calls, counted with before-call):")
        for name, calls in request_costs(url).items():
            print(f"  {name:<22} {sum(calls.values())}  {calls}")
        timings = latencies(url, args.iterations)
    print(f"\nlatency over {args.iterations} interleaved iterations (ms):")
    medians = {}
    for name, values in timings.items():
        values.sort()
        medians[name] = statistics.median(values)
        p90 = values[int(len(values) * 0.9) - 1]
        print(f"  {name:<26} median {medians[name]:6.2f}  p90 {p90:6.2f}  min {values[0]:6.2f}")
    save, put = medians["store.save"], medians["raw put_object(IfMatch)"]
    print(f"  store overhead: {save - put:+.2f} ms per save ({(save / put - 1) * 100:+.1f}%)")


if __name__ == "__main__":
    main()
