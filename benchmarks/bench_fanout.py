"""9. Fan-out (issue 17): one records stage over 8 shards on 1, 2, 4 and 8 local workers.

A one-stage task whose stage plans 8 shards of ``records / 8`` records each, run with
``engine.run(workers=N)`` (plan, the shards on N forked workers, the join) on a
**local-directory store** (the embedded default backend, fsync on), fresh task per run,
the values of N interleaved over rounds (their order rotating), after an untimed
warm-up. Each record costs a calibrated ~``WORK_US`` us of CPU (an integer loop,
standing in for parsing and validating a small record) and is reported with
``batch.ok(record)``; every default of ``ctx.records`` (batches of 100, a checkpoint at
most every 5 s or 10,000 records).

Why a directory and not the moto server: the point is how the engine's workers scale,
and moto would run on the same two cores, taking CPU from the workers in proportion to
the requests (a real S3 runs elsewhere). The requests are few (tens per shard against
25,000 records) and are counted exactly either way.

Reported: wall time, throughput (records/s) and the speed-up against 1 worker in the
same run (ratio of medians, and paired per round), the CPU of every process (this one
plus the reaped workers' rusage) and how many cores were busy on average (CPU / wall).
Then the requests, by phase and by object, from a run made step by step through the
same engine in this process (``run()`` plans, ``run_shard`` per shard, ``run()`` joins)
with the shipped :class:`~eleanor_cloud.testing.conformance.CountingBackend`, and
checked against the requests the forked workers made in the timed runs (counted in
shared memory by a subclass of it).
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import shutil
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks._util import median, paired_ratio, ratio, summary, table, target
from benchmarks.bench_records import _spin, calibrate
from benchmarks.workload import BenchState, new_task_id
from eleanor_cloud.backends.base import ObjectBackend, Version, WriteMode
from eleanor_cloud.testing.conformance import CountingBackend

WORK_US = 20.0
SHARDS = 8
STAGE = "fan"
OPS = ("read", "write", "list", "delete")
# What a key is, for the per-object counts (the order they are printed in).
KINDS = (
    "manifest",
    "task lease",
    "stage object",
    "task listing",
    "plan",
    "shard lease",
    "shard state",
    "shard progress",
    "done markers",
    "stage progress",
    "other",
)


def kind_of(key: str) -> str:
    if key.endswith("/_task.json"):
        return "manifest"
    if "/shards/" in key:
        for suffix, kind in (
            ("/_lease.json", "shard lease"),
            ("/state.json", "shard state"),
            ("/progress.json", "shard progress"),
        ):
            if key.endswith(suffix):
                return kind
        return "other"
    if key.endswith("/_lease.json"):
        return "task lease"
    if key.endswith(f"/{STAGE}/plan.json"):
        return "plan"
    if f"/{STAGE}/done/" in key:
        return "done markers"
    if key.endswith(f"/{STAGE}/progress.json"):
        return "stage progress"  # a records stage's own (the join's open reads it)
    if key.endswith(f"/{STAGE}.json"):
        return "stage object"
    if key.endswith("/"):
        return "task listing"
    return "other"


class KindCounter(CountingBackend):
    """The shipped counter, also counting per kind of object (in this process) and, for
    the forked workers, per operation in shared memory (``shared``: 2 x 4 counters, this
    process's and its children's)."""

    def __init__(self, inner: ObjectBackend, shared: Any = None) -> None:
        super().__init__(inner)
        self.kinds: Counter[tuple[str, str]] = Counter()
        self.shared = shared
        self.parent = os.getpid()

    def _count(self, op: str, key: str) -> None:
        self.kinds[(kind_of(key), op)] += 1
        if self.shared is not None:
            slot = (0 if os.getpid() == self.parent else 1) * len(OPS) + OPS.index(op)
            with self.shared.get_lock():
                self.shared[slot] += 1

    def read(self, key: str) -> tuple[bytes, Version]:
        self._count("read", key)
        return super().read(key)

    def write(self, key: str, data: bytes, mode: WriteMode) -> Version:
        self._count("write", key)
        return super().write(key, data, mode)

    def delete(self, key: str, if_version: Version | None = None) -> None:
        self._count("delete", key)
        super().delete(key, if_version)

    def list(self, prefix: str, delimiter: str | None = None) -> Iterator[str]:
        self._count("list", prefix)
        return super().list(prefix, delimiter)

    def take(self) -> Counter[tuple[str, str]]:
        taken, self.kinds = self.kinds, Counter()
        self.calls.clear()
        return taken


def _stage(per_shard: int, iterations: int) -> Any:
    from eleanor_cloud.engine import BaseStage, Page, Shard

    class FanStage(BaseStage[BenchState]):
        name = STAGE

        def plan(self, state: BenchState, ctx: Any) -> list[Any]:
            return [
                Shard(f"s{i}", {"lo": i * per_shard, "hi": (i + 1) * per_shard})
                for i in range(SHARDS)
            ]

        def run(self, state: BenchState, ctx: Any) -> None:
            lo, hi = ctx.shard.spec["lo"], ctx.shard.spec["hi"]

            def read(cursor: Any, limit: int) -> Any:
                start = lo if cursor is None else int(cursor)
                end = min(start + limit, hi)
                items = [{"id": f"r{i:07d}", "value": i} for i in range(start, end)]
                return Page(items, cursor=end if end < hi else None, total=hi - lo)

            for batch in ctx.records(read):
                for record in batch:
                    _spin(iterations)
                    batch.ok(record)

    return FanStage()


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _engine(store: Any, stage: Any, task_id: str | None = None) -> Any:
    from eleanor_cloud.engine import TaskEngine

    return TaskEngine(task_id or new_task_id("fan"), [stage], BenchState, store)


def _decompose(backend: KindCounter, store: Any, stage: Any, records: int) -> dict[str, Any]:
    """One task step by step in this process: the requests of each phase, by object."""
    engine = _engine(store, stage)
    backend.take()
    planned = engine.run()
    plan = backend.take()
    from eleanor_cloud.engine.fanout import load_plan

    shard_plan = load_plan(store, engine.task_id, STAGE)
    assert shard_plan is not None
    assert not planned.done
    backend.take()
    per_shard: list[Counter[tuple[str, str]]] = []
    for shard in shard_plan.shards:
        engine.run_shard(STAGE, shard.id)
        per_shard.append(backend.take())
    joined = engine.run()
    join = backend.take()
    result = joined.result
    counts_ok = (
        joined.done
        and result is not None
        and result.total_count == records
        and result.success_count == records
    )
    shards_total: Counter[tuple[str, str]] = Counter()
    for c in per_shard:
        shards_total.update(c)
    rows = []
    for kind in KINDS:
        for op in OPS:
            cells = [plan[(kind, op)], shards_total[(kind, op)] / SHARDS, join[(kind, op)]]
            if any(cells):
                rows.append(
                    {
                        "object": kind,
                        "op": op,
                        "plan": cells[0],
                        "per_shard": cells[1],
                        "join": cells[2],
                    }
                )
    checkpoints = [c[("shard progress", "write")] for c in per_shard]
    return {
        "rows": rows,
        "plan_total": sum(plan.values()),
        "per_shard_totals": [sum(c.values()) for c in per_shard],
        "per_shard_total": sum(shards_total.values()) / SHARDS,
        "join_total": sum(join.values()),
        "progress_writes_per_shard": checkpoints,
        "counts_correct": bool(counts_ok),
    }


def run(records: int, rounds: int, worker_counts: tuple[int, ...]) -> dict[str, Any]:
    from eleanor_cloud.backends.local import LocalBackend
    from eleanor_cloud.store import StateStore

    iterations, work_us = calibrate(WORK_US)
    per_shard = records // SHARDS
    records = per_shard * SHARDS
    stage = _stage(per_shard, iterations)
    shared = multiprocessing.get_context("fork").Array("q", 2 * len(OPS))
    root = Path(tempfile.mkdtemp(prefix="bench-fanout-"))
    try:
        backend = KindCounter(LocalBackend(root / "store"), shared)
        store = StateStore(backend, "bench")
        # Untimed: the step-by-step run (its requests, by phase) doubles as the warm-up.
        phases = _decompose(backend, store, stage, records)
        times: dict[int, list[float]] = {n: [] for n in worker_counts}
        cpu: dict[int, list[float]] = {n: [] for n in worker_counts}
        worker_requests: dict[int, list[dict[str, int]]] = {n: [] for n in worker_counts}
        parent_requests: dict[int, list[int]] = {n: [] for n in worker_counts}
        results_ok = True
        load_before = os.getloadavg()
        for index in range(rounds):
            order = list(worker_counts)
            shift = index % len(order)
            for n in order[shift:] + order[:shift]:
                for i in range(len(shared)):
                    shared[i] = 0
                engine = _engine(store, stage)
                cpu0, child0 = time.process_time(), _children_cpu()
                start = time.perf_counter()
                outcome = engine.run(workers=n)
                times[n].append(time.perf_counter() - start)
                cpu[n].append(time.process_time() - cpu0 + _children_cpu() - child0)
                r = outcome.result
                results_ok &= bool(
                    outcome.done
                    and r is not None
                    and r.total_count == records
                    and r.success_count == records
                )
                counts = [int(shared[i]) for i in range(len(shared))]
                parent_requests[n].append(sum(counts[: len(OPS)]))
                worker_requests[n].append(
                    {op: counts[len(OPS) + i] for i, op in enumerate(OPS) if counts[len(OPS) + i]}
                )
        load_after = os.getloadavg()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    base = median(times[1]) if 1 in times else float("nan")
    rows: list[dict[str, Any]] = []
    for n in worker_counts:
        wall = median(times[n])
        workers_total = [sum(w.values()) for w in worker_requests[n]]
        rows.append(
            {
                "workers": n,
                "rounds": rounds,
                "wall": summary(times[n]),
                "records_per_s": round(records / wall),
                "speedup": ratio(base, wall),
                "paired_speedup": paired_ratio(times[1], times[n]) if 1 in times else None,
                "ideal_speedup": min(n, cores or 1),
                "cpu_s": round(median(cpu[n]), 2),
                "busy_cores": round(
                    median([c / t for c, t in zip(cpu[n], times[n], strict=True)]), 2
                ),
                "cpu_us_per_record": round(median(cpu[n]) / records * 1e6, 2),
                "worker_requests_per_shard": round(statistics.median(workers_total) / SHARDS, 2),
                "worker_requests": worker_requests[n][-1],
                "parent_requests": parent_requests[n][-1],
            }
        )
    by_n = {r["workers"]: r for r in rows}
    best = max(rows, key=lambda r: r["speedup"])
    targets = [
        target(
            "every run joined all records, each counted success once",
            "all",
            results_ok and phases["counts_correct"],
            results_ok and phases["counts_correct"],
        ),
        target(
            "the workers' requests per shard (timed runs) = the step-by-step run's",
            f"{phases['per_shard_total']}",
            sorted({r["worker_requests_per_shard"] for r in rows}),
            all(abs(r["worker_requests_per_shard"] - phases["per_shard_total"]) <= 1 for r in rows),
            "up to 1 more per shard when the 5 s timer adds a checkpoint under load",
        ),
    ]
    if 2 in by_n:
        targets.append(
            target(
                "speed-up with 2 workers on 2 cores",
                ">= 1.5 (informational)",
                by_n[2]["speedup"],
                by_n[2]["speedup"] >= 1.5,
                f"paired {by_n[2]['paired_speedup']}; load average "
                f"{load_before[0]:.1f} -> {load_after[0]:.1f}",
            )
        )
    return {
        "store": "local directory (LocalBackend, fsync on), forked workers",
        "records": records,
        "shards": SHARDS,
        "per_shard": per_shard,
        "cores": cores,
        "work_us_target": WORK_US,
        "work_iterations": iterations,
        "work_us_measured": round(work_us, 2),
        "rounds": rounds,
        "load_average": [round(load_before[0], 2), round(load_after[0], 2)],
        "rows": rows,
        "best": {"workers": best["workers"], "speedup": best["speedup"]},
        "requests": phases,
        "counts_correct": results_ok and phases["counts_correct"],
        "targets": targets,
    }


def render(result: dict[str, Any]) -> str:
    rows = [
        [
            r["workers"],
            r["wall"]["median_ms"],
            r["wall"]["p25_ms"],
            r["wall"]["p75_ms"],
            r["records_per_s"],
            r["speedup"],
            "-" if r["paired_speedup"] is None else r["paired_speedup"],
            r["ideal_speedup"],
            r["cpu_s"],
            r["busy_cores"],
            r["worker_requests_per_shard"],
        ]
        for r in result["rows"]
    ]
    out = table(
        f"9. fan-out: {result['records']} records, {result['shards']} shards, "
        f"~{result['work_us_measured']} us CPU per record, {result['rounds']} interleaved "
        f"rounds, {result['cores']} cores ({result['store']})",
        [
            "workers",
            "wall ms",
            "p25 ms",
            "p75 ms",
            "records/s",
            "speed-up",
            "paired",
            "ideal",
            "CPU s",
            "busy cores",
            "req/shard",
        ],
        rows,
    )
    req = result["requests"]
    out += table(
        "9b. requests by phase and object (step by step, one process; per shard: mean of "
        f"{result['shards']})",
        ["object", "op", "plan", "per shard", "join"],
        [[r["object"], r["op"], r["plan"], r["per_shard"], r["join"]] for r in req["rows"]],
    )
    return out + (
        f"\nplan {req['plan_total']} requests, each shard {req['per_shard_totals']} "
        f"(progress writes {req['progress_writes_per_shard']}), join {req['join_total']}; "
        f"load average {result['load_average'][0]} -> {result['load_average'][1]}.\n"
    )
