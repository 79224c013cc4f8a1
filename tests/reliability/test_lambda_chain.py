"""Scenario 9 — a chain of short Lambda-like invocations takes a dead holder's lease
over (issue 15, item 4).

A holder process takes the lease and dies (SIGKILL, from the backend wrapper, at a
random store operation): its lease stands still, and a challenger may take it over
only after watching it for TTL + skew — longer than any one invocation's budget
``B``. So the task is resumed by a chain of invocations, each a fresh process calling
``TaskEngine.run(time_budget=B, lease_watch=...)``. Between two invocations the
orchestrator does what the state machine does: it carries ``LeaseHeld.watch`` on,
waits (the Wait state: time passing while nothing runs, part of the scenario, not
synchronisation), and passes ``watch.plus(waited)`` to the next one, ``waited`` being
measured from the previous process's exit to the next one's start. A run whose watch
cannot end before its deadline returns at once and leaves the watching to that Wait.
The orchestrator waits either the rest of the watch (what the Lambda handler's
``wait_seconds`` asks for) or at most ``B`` per step.

Checked, each chain: the takeover comes within ``ceil((TTL + skew) / B) + 1``
invocations; no invocation's ``run()`` outlives its budget by more than a generous
slack (a bound, not a performance figure: before the fix an invocation watched the
whole TTL + skew past its deadline); the takeover write was sent at least TTL + skew
after the dead holder's last lease write landed (one monotonic clock for every process
on this machine: the chain never credits more watching than happened); the task
completes with the crash-storm invariants. Local directory and S3 over HTTP.
"""

from __future__ import annotations

import math
import random
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eleanor_cloud.engine.lease_watch import LeaseWatch
from eleanor_cloud.store import StateStore
from tests.reliability.conftest import campaign_seed, size
from tests.reliability.harness import (
    PREFIX,
    check_task,
    finish,
    open_backend,
    read_log,
    spawn_worker,
    worker_result,
)

RUNS = size(1, 10)
S3_RUNS = size(1, 5)
STAGES = 4
TTL = 2.0
SKEW = 0.5
NEEDED = TTL + SKEW
SLACK = 1.0  # seconds an invocation's run() may exceed its budget by (requests, stages)
MAX_INVOCATIONS = 20


def _one_chain(rng: random.Random, where: dict[str, Any], tmp: Path) -> dict[str, Any]:
    task_id = f"chain-{uuid.uuid4().hex[:8]}"
    work = tmp / task_id
    work.mkdir()
    budget = rng.uniform(0.8, NEEDED - 0.3)
    bound = math.ceil(NEEDED / budget) + 1
    policy = rng.choice(["rest", "at-most-budget"])
    base = {
        "store": where,
        "task_id": task_id,
        "stages": STAGES,
        "effects": str(work / "effects"),
        "lease_ttl": TTL,
        "clock_skew_tolerance": SKEW,
        "max_attempts": 5,
    }
    at, phase = rng.randint(1, 2 * STAGES - 1), rng.choice(["before", "after"])
    dead_spec = dict(
        base,
        log=str(work / "log-dead"),
        trigger={"at": at, "phase": phase, "ops": "any", "action": "kill", "after_lease": True},
    )
    dead = spawn_worker(dead_spec, work / "dead.json")
    dead_code = finish(dead)
    problems: list[str] = []
    if dead_code != -signal.SIGKILL:
        problems.append(f"the holder was not killed: exit {dead_code}")
    invocations: list[dict[str, Any]] = []
    watch: dict[str, Any] | None = None
    exited = time.monotonic()
    takeover_at: int | None = None
    for number in range(1, MAX_INVOCATIONS + 1):
        spec = dict(
            base,
            log=str(work / f"log-{number}"),
            time_budget=budget,
            wait_for_lease=rng.choice([0.0, 60.0]),
        )
        if watch is not None:
            # Carried on, credited with the time between the last exit and this start.
            spec["lease_watch"] = LeaseWatch.from_dict(watch).plus(time.monotonic() - exited)
            spec["lease_watch"] = spec["lease_watch"].to_dict()
        began = time.monotonic()
        proc = spawn_worker(spec, work / f"inv-{number}.json")
        code = finish(proc)
        exited = time.monotonic()
        result = worker_result(work / f"inv-{number}.json")
        invocations.append(dict(result, pid=proc.pid, wall=exited - began, code=code))
        if code != 0:
            problems.append(f"invocation {number} exited {code}: {result}")
            break
        if not result["run_seconds"] <= budget + SLACK:
            problems.append(
                f"invocation {number} ran {result['run_seconds']:.3f}s on a {budget:.3f}s budget"
            )
        if "lease_takeover" in result["events"]:
            takeover_at = number
        if result["outcome"] == "complete":
            break
        if result["outcome"] == "lease_held":
            watch = result["watch"]
            seen = watch["seconds"] if watch else 0.0
            rest = max(0.0, result["needed_seconds"] - seen)
            wait = rest if policy == "rest" else min(rest, budget)
            threading.Event().wait(wait)  # the Wait state
        elif result["outcome"] == "other" and not result.get("done"):
            watch = None  # paused at its deadline: the lease was released
        else:
            problems.append(f"invocation {number}: {result}")
            break
    else:
        problems.append(f"not complete after {MAX_INVOCATIONS} invocations")
    if takeover_at is None:
        problems.append("no invocation took the lease over")
    elif takeover_at > bound:
        problems.append(f"the takeover took {takeover_at} invocations, more than {bound}")

    # The chain never credited more watching than happened.
    log = read_log([work / "log-dead"] + [work / f"log-{i}" for i in range(1, number + 1)])
    lease_key = f"{PREFIX}/{task_id}/_lease.json"
    lease_writes = [e for e in log if e.get("key") == lease_key and e.get("ok")]
    last_dead = max((e["done"] for e in lease_writes if e["pid"] == dead.pid), default=None)
    taker = invocations[takeover_at - 1]["pid"] if takeover_at else None
    taken = min((e["sent"] for e in lease_writes if e["pid"] == taker), default=None)
    if last_dead is None or taken is None:
        problems.append(f"no lease writes logged (dead {last_dead}, takeover {taken})")
    elif not taken - last_dead >= NEEDED:
        problems.append(
            f"taken over {taken - last_dead:.3f}s after the dead holder's last lease write, "
            f"before the {NEEDED}s watch"
        )
    store = StateStore(open_backend(where), PREFIX)
    problems += check_task(store, task_id, STAGES, work / "effects").problems
    return {
        "task_id": task_id,
        "budget": budget,
        "bound": bound,
        "policy": policy,
        "invocations": len(invocations),
        "takeover_at": takeover_at,
        "max_run_over_budget": max(i["run_seconds"] for i in invocations) - budget,
        "max_wall": max(i["wall"] for i in invocations),
        "problems": problems,
    }


def test_a_chain_of_short_invocations_takes_a_dead_lease_over(
    tmp_path: Path, where: tuple[dict[str, Any], int], summary: Callable[..., None]
) -> None:
    spec, count = where
    seed = campaign_seed()
    rng = random.Random(seed)
    chains = [_one_chain(rng, spec, tmp_path) for _ in range(count)]
    problems = [
        f"{c['task_id']} (budget {c['budget']:.2f}s, {c['policy']}): {p}"
        for c in chains
        for p in c["problems"]
    ]
    summary(
        store=spec["kind"],
        chains=count,
        seed=seed,
        lease_ttl=TTL,
        skew=SKEW,
        budgets=f"{min(c['budget'] for c in chains):.2f}..{max(c['budget'] for c in chains):.2f}",
        policies=dict(Counter(c["policy"] for c in chains)),
        takeover_at_vs_bound=[f"{c['takeover_at']}/{c['bound']}" for c in chains],
        invocations=sum(c["invocations"] for c in chains),
        max_run_over_budget_s=f"{max(c['max_run_over_budget'] for c in chains):.3f}",
        max_process_wall_s=f"{max(c['max_wall'] for c in chains):.3f}",
        failures=len(problems),
    )
    assert not problems, "\n".join(problems[:40])
