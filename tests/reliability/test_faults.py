"""Scenario 4 — injected faults: a loopback proxy in front of the moto S3 server that,
at random, drops connections before or after forwarding, answers 500 / 503 SlowDown,
cuts response bodies short, or holds requests past the client's read timeout (and
then forwards them, late).

Part 1 drives store operations through the proxy and, after each one (once the proxy
has nothing in flight), compares what the store reported with what the server holds,
read directly: a reported success is in the store; a reported Conflict/AlreadyExists
left nothing of that write; a load returns exactly what is stored; ``Unavailable`` is
the only "don't know", and every other outcome is a defect. Part 2 runs whole tasks
through the proxy, re-running after each failure, until every one completes.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from eleanor_cloud.backends.s3 import S3Backend
from eleanor_cloud.engine import Backoff, TaskEngine
from eleanor_cloud.errors import EleanorError, NotFound
from eleanor_cloud.models import StageStatus
from eleanor_cloud.store import StateStore
from tests.reliability.conftest import size
from tests.reliability.harness import (
    PREFIX,
    RelState,
    check_objects_decode,
    check_task,
    make_stages,
)
from tests.support.proxy import (
    DROP,
    FORWARD_THEN_DROP,
    Action,
    Delay,
    FaultProxy,
    ForwardThenTruncate,
    ProxyRequest,
    Respond,
)

OPS = size(150, 1000)
TASKS = size(5, 50)
SLOTS = 6
READ_TIMEOUT = 0.4


class RandomFaults:
    """The proxy's standing rule: a fault with probability ``rate`` per request."""

    def __init__(self, seed: int, rate: float) -> None:
        self.rng = random.Random(seed)
        self.rate = rate
        self.lock = threading.Lock()
        self.injected: Counter[str] = Counter()
        self.enabled = True

    def __call__(self, request: ProxyRequest) -> Action | None:
        with self.lock:
            if not self.enabled or self.rng.random() >= self.rate:
                return None
            kind = self.rng.choice(
                ["drop", "forward-then-drop", "500", "503-SlowDown", "late", "truncated"]
            )
            self.injected[kind] += 1
        if kind == "drop":
            return DROP
        if kind == "forward-then-drop":
            return FORWARD_THEN_DROP
        if kind == "500":
            return Respond(500, "InternalError", "injected")
        if kind == "503-SlowDown":
            return Respond(503, "SlowDown", "injected")
        if kind == "late":  # the client gives up first; the request still arrives, late
            return Delay(READ_TIMEOUT * 2)
        return ForwardThenTruncate(keep=7)


def faulty_backend(bucket: str, url: str, attempts: int = 3) -> S3Backend:
    from botocore.config import Config

    return S3Backend(
        bucket,
        endpoint_url=url,
        region_name="us-east-1",
        config=Config(
            connect_timeout=1.0,
            read_timeout=READ_TIMEOUT,
            retries={"mode": "standard", "max_attempts": attempts},
        ),
    )


@pytest.fixture
def faults(moto_server_url: str) -> Iterator[tuple[FaultProxy, RandomFaults, int]]:
    seed = random.randrange(1 << 30)
    rule = RandomFaults(seed, rate=0.25)
    with FaultProxy(moto_server_url, rule) as proxy:
        yield proxy, rule, seed


@pytest.mark.usefixtures("atomic_moto")
def test_every_outcome_the_store_reports_is_true(
    faults: tuple[FaultProxy, RandomFaults, int],
    moto_server_url: str,
    s3_bucket: str,
    summary: Callable[..., None],
) -> None:
    proxy, rule, seed = faults
    store = StateStore(faulty_backend(s3_bucket, proxy.url), PREFIX)
    truth = StateStore(
        S3Backend(s3_bucket, endpoint_url=moto_server_url, region_name="us-east-1"), PREFIX
    )
    rng = random.Random(seed + 1)
    # Whether the faulty store may write the slot: it holds the version to CAS against
    # ("cached"), or has just seen that there is no object, so it may create ("absent").
    known = ["unknown"] * SLOTS
    # The record each save replaces: what the faulty store last read or wrote there
    # (None: it saw no object, so the save creates). Versions travel with the data.
    held: list[Any] = [None] * SLOTS
    outcomes: Counter[str] = Counter()
    problems: list[str] = []
    unknown_landed = 0

    def stored(slot: int) -> RelState | None:
        try:
            return truth.load(f"f{slot}", "s", RelState)
        except NotFound:
            return None

    for op in range(OPS):
        slot = rng.randrange(SLOTS)
        task_id = f"f{slot}"
        if rng.random() < 0.1 and stored(slot) is not None:
            # Another writer moves the object on: the faulty store's version goes stale.
            seen = truth.load_record(task_id, "s", RelState)
            truth.save(
                RelState(task_id=task_id, stage_name="s", note=f"foreign-{op}"), replaces=seen
            )
            continue
        if known[slot] == "unknown" or rng.random() < 0.3:
            kind = "load"
            try:
                record = store.load_record(task_id, "s", RelState)
            except NotFound:
                outcome = "not-found"
                known[slot], held[slot] = "absent", None
            except EleanorError as exc:
                outcome = type(exc).__name__
            else:
                outcome = "ok"
                known[slot], held[slot] = "cached", record
        else:
            kind = "save"
            note = f"op-{op}"
            try:
                record = store.save(
                    RelState(task_id=task_id, stage_name="s", note=note), replaces=held[slot]
                )
            except EleanorError as exc:
                outcome = type(exc).__name__
                known[slot] = "unknown"
            else:
                outcome = "ok"
                known[slot], held[slot] = "cached", record
        proxy.wait_settled()  # a late request must have landed (or not) before we look
        current = stored(slot)
        outcomes[f"{kind}:{outcome}"] += 1
        where = f"op {op} {kind} {task_id}: {outcome}"
        if kind == "load" and outcome == "ok":
            if current is None or record.value != current:
                problems.append(
                    f"{where} returned {record.value.note!r}, server has "
                    f"{current.note if current else None!r}"
                )
        elif kind == "load" and outcome == "not-found":
            if current is not None:
                problems.append(f"{where} but the server has {current.note!r}")
        elif kind == "save" and outcome == "ok":
            if current is None or current.note != note:
                problems.append(f"{where} but the server has {current.note if current else None!r}")
        elif kind == "save" and outcome in ("AlreadyExists", "Conflict"):
            if current is not None and current.note == note:
                problems.append(f"{where} reported, yet the write landed")
        elif outcome == "Unavailable":
            unknown_landed += kind == "save" and current is not None and current.note == note
        else:
            problems.append(f"{where}: not an outcome the store may report")
    rule.enabled = False
    for slot in range(SLOTS):
        problems += check_objects_decode(truth, f"f{slot}")
    summary(
        ops=OPS,
        seed=seed,
        requests=len(proxy.log),
        faults=dict(rule.injected),
        outcomes=dict(outcomes),
        unavailable_but_landed=unknown_landed,
        write_answers_lost=sum(
            e.request.method == "PUT" and e.action == "ForwardThenDrop" for e in proxy.log
        ),
        failures=len(problems),
    )
    assert sum(rule.injected.values()) >= OPS // 10
    assert outcomes["save:ok"] >= 1 and outcomes["load:ok"] >= 1
    assert not problems, "\n".join(problems[:40])


@pytest.mark.usefixtures("atomic_moto")
def test_tasks_complete_through_faults(
    faults: tuple[FaultProxy, RandomFaults, int],
    moto_server_url: str,
    s3_bucket: str,
    tmp_path: Path,
    summary: Callable[..., None],
) -> None:
    proxy, rule, seed = faults
    rule.rate = 0.15
    truth = StateStore(
        S3Backend(s3_bucket, endpoint_url=moto_server_url, region_name="us-east-1"), PREFIX
    )
    stages = 5
    reruns: Counter[str] = Counter()
    problems: list[str] = []
    for number in range(TASKS):
        task_id = f"task-{number}-{uuid.uuid4().hex[:6]}"
        effects = tmp_path / f"{task_id}.effects"
        done = False
        for _ in range(40):
            engine = TaskEngine(
                task_id,
                make_stages(stages, effects),
                RelState,
                # Two attempts per request: some faults get through botocore to the engine.
                StateStore(faulty_backend(s3_bucket, proxy.url, attempts=2), PREFIX),
                lease_ttl=2.0,
                wait_for_lease=10.0,
                clock_skew_tolerance=0.0,
                max_attempts=10,
                backoff=Backoff(initial=0.01, max_delay=0.05),
            )
            try:
                result = engine.run()
            except EleanorError as exc:
                reruns[type(exc).__name__] += 1
                continue
            if result.status is StageStatus.COMPLETE:
                done = True
                break
            reruns[f"ended {result.status.value}"] += 1
            problems.append(f"{task_id}: a run ended {result.status.value}: {result.message}")
            break
        proxy.wait_settled()
        if not done:
            problems.append(f"{task_id}: not complete after 40 runs")
        problems += [
            f"{task_id}: {p}" for p in check_task(truth, task_id, stages, effects).problems
        ]
    summary(
        tasks=TASKS,
        seed=seed,
        stages=stages,
        requests=len(proxy.log),
        faults=dict(rule.injected),
        failed_runs_rerun=dict(reruns),
        failures=len(problems),
    )
    assert sum(rule.injected.values()) >= 1
    assert not problems, "\n".join(problems[:40])
