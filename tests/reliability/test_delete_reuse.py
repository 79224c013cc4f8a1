"""Scenario 8 — delete a task and reuse its id while a holder of it is frozen (issue 15,
item 2).

Each round: holder A runs the task (in some rounds over the tombstone of an earlier,
deleted incarnation) and freezes itself (SIGSTOP, from the backend wrapper) right
before or after a random store operation once it holds the lease. An operator process
deletes the task with ``eleanor_cloud.engine.delete_task``: first without waiting (a
lease that still looks live refuses: ``LeaseHeld``), then waiting, so it watches the
frozen holder's lease for TTL + skew, takes it and leaves it as a tombstone. A new run
B of the same task id completes it. A is thawed (SIGCONT) before B starts, just as B
starts, while B runs, or after B completed, at random, and carries on.

Checked on the final store: every stage object was written by B at an epoch above the
tombstone's ``floor`` and holds B's attempt 1 only (result, history, attempts); the
manifest is B's; nothing A wrote after the delete survives (a stray object it created
in the emptied task is reset by B's fence); on the lease key, across every process,
no revision was written twice and epochs never went down; B's side effects happened
once per stage. Local directory and S3 over HTTP (moto server).
"""

from __future__ import annotations

import json
import random
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eleanor_cloud.store import StateStore
from eleanor_cloud.store.records import BROKEN_EXPIRY
from tests.reliability.conftest import campaign_seed, size
from tests.reliability.harness import (
    PREFIX,
    RelState,
    check_task,
    check_write_log,
    finish,
    open_backend,
    read_log,
    read_timeline,
    spawn_worker,
    stage_names,
    wait_until,
    worker_result,
)

RUNS = size(2, 30)
S3_RUNS = size(1, 10)
STAGES = 5
TTL = 0.5
SKEW = 0.25
OPS = 2 * STAGES + 1  # operations of a run after taking the lease (renewals aside)
THAW = ("before-new-run", "as-new-run-starts", "while-new-run-runs", "after-new-run")


def pid_of(writer: str) -> int:
    return int(writer.split("/")[1])


def _one_round(rng: random.Random, where: dict[str, Any], tmp: Path) -> dict[str, Any]:
    task_id = f"reuse-{uuid.uuid4().hex[:8]}"
    work = tmp / task_id
    work.mkdir()
    timeline = work / "timeline"
    base = {
        "store": where,
        "task_id": task_id,
        "stages": STAGES,
        "timeline": str(timeline),
        "lease_ttl": TTL,
        "renew_interval": TTL / 4,
        "clock_skew_tolerance": SKEW,
        "max_attempts": 5,
    }
    logs = [work / f"log-{who}" for who in ("prior", "a", "op", "b")]
    prior = rng.random() < 0.3
    if prior:  # an earlier incarnation, completed and deleted: A starts over its tombstone
        finish(spawn_worker(dict(base, effects=str(work / "fx-prior")), work / "prior.json"))
        deleter = dict(base, mode="delete", delete_waits=[0.0], log=str(logs[0]))
        finish(spawn_worker(deleter, work / "prior-delete.json"))
    at, phase = rng.randint(1, OPS), rng.choice(["before", "after"])
    marker = work / "stopped"
    trigger = {"at": at, "phase": phase, "ops": "any", "action": "stop", "after_lease": True}
    a_spec = dict(
        base,
        effects=str(work / "fx-a"),
        log=str(logs[1]),
        trigger=dict(trigger, marker=str(marker)),
    )
    a = spawn_worker(a_spec, work / "a.json")
    wait_until(lambda: marker.exists() or a.poll() is not None, 60, "A to freeze or end")
    stopped = marker.exists()
    order = rng.choice(THAW)
    thawed_at: float | None = None
    b = None

    def thaw() -> None:
        nonlocal thawed_at
        if stopped and thawed_at is None:
            thawed_at = time.monotonic()
            a.send_signal(signal.SIGCONT)

    store = StateStore(open_backend(where), PREFIX)
    try:
        op_spec = dict(base, mode="delete", delete_waits=[0.0, 30.0], log=str(logs[2]))
        op = spawn_worker(op_spec, work / "op.json")
        op_code = finish(op)
        tombstone = store.load_lease(task_id)
        if order == "before-new-run":
            thaw()
            finish(a)
        b = spawn_worker(dict(base, effects=str(work / "fx-b"), log=str(logs[3])), work / "b.json")
        if order == "as-new-run-starts":
            thaw()
        elif order == "while-new-run-runs":
            wait_until(
                lambda: (
                    any(
                        m.get("kind") in ("lease_acquired", "lease_takeover") and m["pid"] == b.pid
                        for m in read_timeline(timeline)
                    )
                    or b.poll() is not None
                ),
                60,
                "B to take the lease",
            )
            thaw()
        b_code = finish(b)
    finally:
        thaw()
    a_code = finish(a)
    op_result = worker_result(work / "op.json")
    a_result, b_result = worker_result(work / "a.json"), worker_result(work / "b.json")

    problems: list[str] = []
    if op_code != 0 or op_result["outcome"] != "deleted":
        problems.append(f"the delete did not happen: exit {op_code} {op_result}")
    if b_code != 0 or b_result["outcome"] != "complete":
        problems.append(f"B did not complete: exit {b_code} {b_result}")
    if a_code != 0 or a_result["outcome"] not in ("lease_lost", "complete"):
        problems.append(f"A ended badly: exit {a_code} {a_result}")
    floor = 0
    if tombstone is None:
        problems.append("no lease object after the delete")
    else:
        floor = tombstone.value.floor
        if tombstone.value.expires_at != BROKEN_EXPIRY or floor != tombstone.value.epoch:
            problems.append(f"the delete left no tombstone: {tombstone.value}")

    # The final task is B's alone, above the floor, attempt 1 of the new incarnation.
    records = store.load_task_records(task_id, RelState)
    for name in stage_names(STAGES):
        record = records.get(name)
        if record is None:
            problems.append(f"{name}: no stored state")
            continue
        state = record.value
        where_ = f"{name} (writer {record.writer}, epoch {record.epoch}, floor {floor})"
        if pid_of(record.writer) != b.pid or record.epoch <= floor:
            problems.append(f"{where_}: not written by the new run above the floor")
        if state.attempts != 1 or [h.attempt for h in state.history] != [1]:
            problems.append(f"{where_}: attempts {state.attempts}, history {state.history}")
        if state.result is None or state.result.pid != b.pid:
            problems.append(f"{where_}: result {state.result}")
    manifest_key = store.manifest_key(task_id)
    manifest = json.loads(store.backend.read(manifest_key)[0])
    if pid_of(manifest["writer"]) != b.pid:
        problems.append(f"the manifest was written by {manifest['writer']}, not B")
    lease = store.load_lease(task_id)
    if lease is None or lease.value.floor != floor or lease.value.epoch <= floor:
        problems.append(f"the final lease {lease} lost the floor {floor}")
    problems += check_task(store, task_id, STAGES, work / "fx-b").problems

    # Nothing A wrote after the delete survives; its writes never broke the write order.
    log = read_log(logs)
    deleted_at = next(
        (m["t"] for m in read_timeline(timeline) if m["what"] == "deleted" and m["pid"] == op.pid),
        None,
    )
    late = [
        e
        for e in log
        if e["pid"] == a.pid
        and e.get("op") == "write"
        and deleted_at is not None
        and e["done"] >= deleted_at
    ]
    landed = [e for e in late if e["ok"]]
    final_ids = {
        r.key: r.write_id for r in [*records.values(), *([lease] if lease is not None else [])]
    }
    problems += [
        f"a write of A after the delete survives: {e}"
        for e in landed
        if final_ids.get(e["key"]) == e["write_id"]
    ]
    lease_key = store.lease_key(task_id)
    problems += check_write_log([e for e in log if e.get("key") == lease_key])
    after_delete = [e for e in log if deleted_at is not None and e.get("sent", 0) >= deleted_at]
    problems += check_write_log([e for e in after_delete if e["pid"] in (a.pid, b.pid)])
    # A stage body A ran after it was thawed (its RUNNING create landed in the emptied
    # task): reported, and checked never to have left a trace in the final task above.
    zombie_bodies = [
        m
        for m in read_timeline(timeline)
        if m["what"] == "effect" and m["pid"] == a.pid and thawed_at and m["t"] >= thawed_at
    ]
    return {
        "task_id": task_id,
        "at": at,
        "phase": phase,
        "order": order,
        "prior": prior,
        "stopped": stopped,
        "delete_tries": "+".join(op_result.get("tries", [])),
        "a": a_result["outcome"],
        "zombie_writes": len(late),
        "zombie_landed": len(landed),
        "zombie_bodies": len(zombie_bodies),
        "fenced": "lease_takeover" in b_result.get("events", []),
        "problems": problems,
    }


def test_a_deleted_task_id_is_reused_safely_with_a_zombie_about(
    tmp_path: Path, where: tuple[dict[str, Any], int], summary: Callable[..., None]
) -> None:
    spec, count = where
    seed = campaign_seed()
    rng = random.Random(seed)
    rounds = [_one_round(rng, spec, tmp_path) for _ in range(count)]
    problems = [
        f"{r['task_id']} (stop {r['phase']} op {r['at']}, thaw {r['order']}): {p}"
        for r in rounds
        for p in r["problems"]
    ]
    summary(
        store=spec["kind"],
        rounds=count,
        seed=seed,
        stopped=sum(r["stopped"] for r in rounds),
        over_a_tombstone=sum(r["prior"] for r in rounds),
        thaw=dict(Counter(r["order"] for r in rounds)),
        delete_tries=dict(Counter(r["delete_tries"] for r in rounds)),
        zombie_outcomes=dict(Counter(r["a"] for r in rounds)),
        zombie_writes_after_delete=sum(r["zombie_writes"] for r in rounds),
        zombie_writes_landed=sum(r["zombie_landed"] for r in rounds),
        zombie_bodies_after_thaw=sum(r["zombie_bodies"] for r in rounds),
        failures=len(problems),
    )
    assert not problems, "\n".join(problems[:50])
