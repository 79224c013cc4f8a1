"""7. Record-level checkpoints: ``ctx.records`` over N records on S3 (moto over HTTP).

One-stage tasks through the real ``TaskEngine`` on the moto server, interleaved:

- **records, default interval**: the stage iterates ``ctx.records(read)`` with the
  defaults (batches of 100, a checkpoint at most every 5 s or 10,000 records) and
  reports each record with ``batch.ok(record)``;
- **records, every 1,000**: the same with ``checkpoint_records=1000`` (the cost of a
  checkpoint, by difference);
- **plain stage (baseline)**: the same pages, read with the same ``read(cursor,
  limit)``, and the same per-record work, in a stage that loops over them itself: no
  records API, no checkpoint. The ratio *records / plain* is what record-level
  checkpoints add to a stage;
- **bare loop**: that loop without any engine, for information (the engine's fixed
  cost per run: manifest, lease, two stage writes, the lease threads).

The input comes from memory (a list sliced by an offset cursor) so that S3 sees only
the engine's requests; the per-record work is a CPU-bound loop calibrated to
``WORK_US`` of CPU (a parse-and-validate of a small record costs that much in Python).
Requests are counted with botocore ``before-send``. Then the sizes: one records stage
whose every record fails, after ``failed`` records, with the default interval: the
progress object, the stage object and the failed-id chunks beside them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from benchmarks._util import (
    REGION,
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
from benchmarks.workload import BenchState, new_task_id

TARGET_RATIO = 1.05
SIZE_LIMIT = 4096  # bytes: "a few KiB"
WORK_US = 25.0
BATCH = 100  # the records API's default batch size
STAGE = "records"


def _spin(iterations: int) -> int:
    x = 0
    for i in range(iterations):
        x = (x * 31 + i) & 0xFFFFFFFF
    return x


def calibrate(target_us: float) -> tuple[int, float]:
    """Iterations of ``_spin`` that cost ``target_us`` of CPU here, and what they cost."""
    probe, reps = 200, 500
    start = time.process_time()
    for _ in range(reps):
        _spin(probe)
    per_iteration = (time.process_time() - start) / (reps * probe)
    iterations = max(1, round(target_us / 1e6 / per_iteration))
    start = time.process_time()
    for _ in range(reps):
        _spin(iterations)
    return iterations, (time.process_time() - start) / reps * 1e6


def make_records(n: int) -> list[dict[str, Any]]:
    return [{"id": f"r{i:07d}", "value": i} for i in range(n)]


def reader(records: list[dict[str, Any]]) -> Callable[[Any, int], Any]:
    """``read(cursor, limit)``: an offset cursor over a list, as the demo's."""
    from eleanor_cloud.engine import Page

    def read(cursor: Any, limit: int) -> Any:
        start = int(cursor or 0)
        end = min(start + limit, len(records))
        return Page(
            records[start:end], cursor=end if end < len(records) else None, total=len(records)
        )

    return read


def plain_loop(read: Callable[[Any, int], Any], work: Callable[[Any], Any]) -> int:
    """The baseline's loop: every page, every record, no records API."""
    cursor, done = None, 0
    while True:
        page = read(cursor, BATCH)
        for record in page.items:
            work(record)
            done += 1
        cursor = page.cursor
        if cursor is None:
            return done


def _stage_classes() -> tuple[type[Any], type[Any]]:
    from eleanor_cloud import SimpleRecordsResult
    from eleanor_cloud.engine import BaseStage

    class RecordsStage(BaseStage[BenchState]):
        name = STAGE

        def __init__(
            self,
            read: Callable[[Any, int], Any],
            work: Callable[[Any], Any] | None,
            fail: bool = False,
            **options: Any,
        ) -> None:
            super().__init__()
            self.read, self.work, self.fail, self.options = read, work, fail, options

        def run(self, state: BenchState, ctx: Any) -> None:
            work, fail = self.work, self.fail
            for batch in ctx.records(self.read, **self.options):
                for record in batch:
                    if work is not None:
                        work(record)
                    if fail:
                        batch.fail(record, "upstream rejected the record: HTTP 422")
                    else:
                        batch.ok(record)
            # None: the engine's computed SimpleRecordsResult is the result.

    class PlainStage(BaseStage[BenchState]):
        name = STAGE

        def __init__(self, read: Callable[[Any, int], Any], work: Callable[[Any], Any]) -> None:
            super().__init__()
            self.read, self.work = read, work

        def run(self, state: BenchState, ctx: Any) -> SimpleRecordsResult:
            done = plain_loop(self.read, self.work)
            return SimpleRecordsResult(total_count=done, success_count=done)

    return RecordsStage, PlainStage


def _run_engine(store: Any, stage: Any, events: list[str] | None = None) -> Any:
    from eleanor_cloud.engine import TaskEngine

    task_id = new_task_id("rec")
    on_event = None if events is None else (lambda e: events.append(e.kind))
    outcome = TaskEngine(task_id, [stage], BenchState, store, on_event=on_event).run()
    if not outcome.done:
        raise RuntimeError(f"records bench task {task_id} ended {outcome.status}")
    return task_id, outcome


def batch_report_cost(batch_size: int = BATCH, reps: int = 200) -> dict[str, float]:
    """CPU per ``batch.ok(record)`` vs ``batch.ok(record_id)`` in a batch of ``batch_size``:
    a record object is found by a scan of the batch, an id by a set lookup."""
    from eleanor_cloud.engine import Batch

    items = make_records(batch_size)
    ids = [r["id"] for r in items]
    costs: dict[str, float] = {}
    for label, handles in (("by_record_us", items), ("by_id_us", ids)):
        start = time.process_time()
        for _ in range(reps):
            batch = Batch(items, ids, "t/s/0", 0, retry=False)
            for handle in handles:
                batch.ok(handle)
        costs[label] = round((time.process_time() - start) / (reps * batch_size) * 1e6, 3)
    return costs


def api_cost(records: list[dict[str, Any]], rounds: int) -> dict[str, Any]:
    """The records API alone: no per-record work, the memory backend (no requests to
    wait for), records stage vs plain stage, interleaved; CPU per record."""
    from eleanor_cloud import open_store

    records_cls, plain_cls = _stage_classes()
    store, read = open_store("memory://"), reader(records)

    def nothing(record: Any) -> None:
        return None

    cpu: dict[str, list[float]] = {}
    interleaved(
        {
            "records": lambda: _run_engine(store, records_cls(read, nothing)),
            "plain": lambda: _run_engine(store, plain_cls(read, nothing)),
        },
        rounds,
        warmup=1,
        cpu=cpu,
    )
    per = (median(cpu["records"]) - median(cpu["plain"])) / len(records) * 1e6
    return {
        "records_cpu_ms": round(median(cpu["records"]) * 1000, 1),
        "plain_cpu_ms": round(median(cpu["plain"]) * 1000, 1),
        "us_per_record": round(per, 3),
    }


def _sizes(store: Any, task_id: str) -> dict[str, Any]:
    from eleanor_cloud import keys

    backend = store.backend
    progress = len(backend.read(keys.progress_key(store.prefix, task_id, STAGE))[0])
    stage = len(backend.read(store.stage_key(task_id, STAGE))[0])
    folder = keys.progress_key(store.prefix, task_id, STAGE).rsplit("/", 1)[0] + "/failed/"
    chunks = [len(backend.read(key)[0]) for key in backend.list(folder)]
    return {
        "progress_bytes": progress,
        "stage_bytes": stage,
        "chunks": len(chunks),
        "chunk_bytes": sum(chunks),
    }


def run(n_records: int, rounds: int, n_failed: int, server_url: str) -> dict[str, Any]:
    import boto3

    from eleanor_cloud import open_store

    records_cls, plain_cls = _stage_classes()
    iterations, work_us = calibrate(WORK_US)

    def work(record: Any) -> int:
        return _spin(iterations)

    records = make_records(n_records)
    read = reader(records)
    client = boto3.client("s3", endpoint_url=server_url, region_name=REGION)
    plain_client = boto3.client("s3", endpoint_url=server_url, region_name=REGION)
    bucket = new_bucket(client, "records")
    store = open_store(f"s3://{bucket}/bench", client=client)
    plain_store = open_store(f"s3://{bucket}/bench", client=plain_client)
    warm_probe(store)
    warm_probe(plain_store)
    log = RequestLog().attach(client)

    traces: dict[str, list[list[Any]]] = {"default": [], "every_1000": []}
    checkpoints: dict[str, list[int]] = {"default": [], "every_1000": []}
    results: list[Any] = []

    def records_variant(label: str, **options: Any) -> Callable[[], None]:
        def go() -> None:
            events: list[str] = []
            log.clear()
            _, outcome = _run_engine(store, records_cls(read, work, **options), events)
            traces[label].append(log.take())
            checkpoints[label].append(events.count("stage_checkpointed"))
            results.append(outcome.result)

        return go

    def plain() -> None:
        _run_engine(plain_store, plain_cls(read, work))

    def bare() -> None:
        plain_loop(read, work)

    variants = {
        "records, default interval": records_variant("default"),
        "records, every 1,000": records_variant("every_1000", checkpoint_records=1000),
        "plain stage (baseline)": plain,
        "bare loop (no engine)": bare,
    }
    cpu: dict[str, list[float]] = {}
    warmup = 1 if rounds > 1 else 0
    times = interleaved(variants, rounds, warmup=warmup, cpu=cpu)
    counts_ok = all(
        r.total_count == n_records and r.success_count == n_records and r.fail_count == 0
        for r in results
    )
    base, base_cpu = median(times["plain stage (baseline)"]), median(cpu["plain stage (baseline)"])
    labels = {"records, default interval": "default", "records, every 1,000": "every_1000"}
    rows: list[dict[str, Any]] = []
    for name in variants:
        label = labels.get(name)
        trace = traces[label][-1] if label else []
        stable = label is None or len({len(t) for t in traces[label]}) == 1
        rows.append(
            {
                "variant": name,
                "rounds": rounds,
                "wall": summary(times[name]),
                "cpu": summary(cpu[name]),
                "ratio": ratio(median(times[name]), base),
                "paired_ratio": paired_ratio(times[name], times["plain stage (baseline)"]),
                "cpu_ratio": ratio(median(cpu[name]), base_cpu),
                "requests": len(trace) if label else None,
                "requests_per_1000": round(len(trace) * 1000 / n_records, 3) if label else None,
                "requests_by_operation": by_operation(trace),
                "progress_puts": sum(
                    r.operation == "PutObject" and r.key.endswith("/progress.json") for r in trace
                ),
                "checkpoints": checkpoints[label][-1] if label else None,
                "request_count_stable": stable,
            }
        )
    by_name = {r["variant"]: r for r in rows}
    default, every = by_name["records, default interval"], by_name["records, every 1,000"]
    per_checkpoint_ms = None
    if every["checkpoints"] and default["checkpoints"] is not None:
        extra = every["checkpoints"] - default["checkpoints"]
        if extra > 0:
            delta = median(times["records, every 1,000"]) - median(
                times["records, default interval"]
            )
            per_checkpoint_ms = round(delta * 1000 / extra, 3)
    engine_fixed_ms = round(
        (base - median(times["bare loop (no engine)"])) * 1000,
        1,
    )

    # Sizes after n_failed failed records (every record fails), default interval.
    failing = make_records(n_failed)
    log.clear()
    failed_task, failed_summary = _run_engine(
        store, records_cls(reader(failing), None, fail=True, tolerate_failures=True)
    )
    failed_trace = log.take()
    failed = {
        "records": n_failed,
        **_sizes(store, failed_task),
        "fail_count": failed_summary.result.fail_count,
        "requests": len(failed_trace),
        "requests_by_operation": by_operation(failed_trace),
    }
    # The same stage with no failure, for the size of a progress object without chunks.
    ok_task, _ = _run_engine(store, records_cls(reader(failing), None))
    clean = _sizes(store, ok_task)
    failed["progress_bytes_without_failures"] = clean["progress_bytes"]
    failed["stage_bytes_without_failures"] = clean["stage_bytes"]
    per_chunk = (failed["progress_bytes"] - clean["progress_bytes"]) / max(1, failed["chunks"])
    failed["progress_bytes_per_chunk"] = round(per_chunk, 1)

    reports = batch_report_cost()
    api = api_cost(records, max(1, rounds))
    # What the records API adds per record (CPU, S3 run), and the per-record work at
    # which that is 5%: the ratio is about 1 + api / work.
    api_us = (median(cpu["records, default interval"]) - base_cpu) / n_records * 1e6
    targets = [
        target(
            "records/plain stage wall, default interval (ratio of medians)",
            f"<= {TARGET_RATIO}",
            default["ratio"],
            default["ratio"] <= TARGET_RATIO,
            f"paired {default['paired_ratio']}; {n_records} records, "
            f"{default['checkpoints']} checkpoints",
        ),
        target(
            "records/plain stage CPU, default interval",
            f"<= {TARGET_RATIO}",
            default["cpu_ratio"],
            default["cpu_ratio"] <= TARGET_RATIO,
            f"batch.ok(record) {reports['by_record_us']} us vs batch.ok(id) "
            f"{reports['by_id_us']} us per record (batch of {BATCH})",
        ),
        target(
            f"progress object after {n_failed} failed records",
            f"<= {SIZE_LIMIT} bytes",
            failed["progress_bytes"],
            failed["progress_bytes"] <= SIZE_LIMIT,
            f"{failed['chunks']} chunk objects beside it, {failed['chunk_bytes']} bytes",
        ),
        target(
            f"stage object after {n_failed} failed records",
            f"<= {SIZE_LIMIT} bytes",
            failed["stage_bytes"],
            failed["stage_bytes"] <= SIZE_LIMIT,
        ),
    ]
    return {
        "peer": "moto ThreadedMotoServer over HTTP",
        "records": n_records,
        "batch_size": BATCH,
        "work_us_target": WORK_US,
        "work_iterations": iterations,
        "work_us_measured": round(work_us, 2),
        "rounds": rounds,
        "rows": rows,
        "counts_correct": counts_ok,
        "per_checkpoint_ms": per_checkpoint_ms,
        "engine_fixed_ms": engine_fixed_ms,
        "batch_report": reports,
        "api_cpu_us_per_record": round(api_us, 3),
        "break_even_work_us": round(api_us / (TARGET_RATIO - 1), 1),
        "api_only": api,
        "failed": failed,
        "targets": targets,
    }


def render(result: dict[str, Any]) -> str:
    rows = [
        [
            r["variant"],
            r["wall"]["median_ms"],
            r["wall"]["p25_ms"],
            r["wall"]["p75_ms"],
            r["ratio"],
            r["paired_ratio"],
            r["cpu"]["median_ms"],
            r["cpu_ratio"],
            "-" if r["requests"] is None else r["requests"],
            "-" if r["requests_per_1000"] is None else r["requests_per_1000"],
            "-" if r["checkpoints"] is None else r["checkpoints"],
        ]
        for r in result["rows"]
    ]
    out = table(
        f"7. record-level checkpoints: {result['records']} records, batches of "
        f"{result['batch_size']}, ~{result['work_us_measured']} us CPU of work per record, "
        f"{result['rounds']} interleaved rounds ({result['peer']})",
        [
            "variant",
            "wall ms",
            "p25 ms",
            "p75 ms",
            "ratio",
            "paired ratio",
            "CPU ms",
            "CPU ratio",
            "requests",
            "req/1000 rec",
            "checkpoints",
        ],
        rows,
    )
    f = result["failed"]
    out += table(
        f"7b. sizes after {f['records']} failed records (default interval)",
        ["object", "bytes", "without failures"],
        [
            ["progress.json", f["progress_bytes"], f["progress_bytes_without_failures"]],
            ["stage object", f["stage_bytes"], f["stage_bytes_without_failures"]],
            [f"failed/ chunks ({f['chunks']})", f["chunk_bytes"], 0],
        ],
    )
    default = next(r for r in result["rows"] if r["variant"] == "records, default interval")
    return out + (
        f"\nrequests per default-interval run: {default['requests_by_operation']} "
        f"({default['progress_puts']} progress PUTs); failing run: {f['requests_by_operation']}. "
        f"Per extra checkpoint: {result['per_checkpoint_ms']} ms; the engine's fixed cost "
        f"per run (plain stage - bare loop): {result['engine_fixed_ms']} ms; progress.json "
        f"grows {f['progress_bytes_per_chunk']} bytes per chunk of failed ids. "
        f"batch.ok(record): {result['batch_report']['by_record_us']} us, "
        f"batch.ok(id): {result['batch_report']['by_id_us']} us per record. "
        f"The records API costs {result['api_cpu_us_per_record']} us CPU per record on "
        f"this run ({result['api_only']['us_per_record']} us with no work on the memory "
        f"backend), so the ratio meets {TARGET_RATIO} from about "
        f"{result['break_even_work_us']} us of work per record.\n"
    )
