"""Scenario 7 — stalled renewals (a partition of the lease key): the holder must stop
on its own clock before anybody can take its lease over (issue 15, item 1).

A holder process runs a task on S3 through the fault proxy (moto's HTTP server
behind it, on 127.0.0.1). Its long stage works in small steps until ``ctx.cancelled``.
At a random moment while that stage runs, the proxy starts holding every request for
the task's ``_lease.json`` — renewals and reads alike — without ever answering (they
are dropped when the run is over): a stalled connection, a one-way partition. The
holder's client timeouts are random too, one of them far longer than the TTL. A
challenger process, talking to moto directly, waits for the lease and takes it over
once it has stood still for TTL + skew.

Every process runs on this machine, so ``time.monotonic`` is one clock for all: the
holder's stage notes the first moment it saw ``ctx.cancelled`` true and the last it saw
it false, the challenger notes its ``lease_takeover`` event, and the write logs of both
note when each write was sent and answered. Checked, every run: the holder stopped
before the takeover (and its last "still mine" came before the takeover write was even
sent); it began no write after the takeover and none of its writes landed after one of
the challenger's; each stage's side effect happened once per legitimate attempt (the
long stage: the holder's cut attempt and the challenger's), with the crash-storm
invariants on the final store.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from eleanor_cloud.backends.s3 import S3Backend
from eleanor_cloud.store import StateStore
from tests.reliability.conftest import campaign_seed, size
from tests.reliability.harness import (
    PREFIX,
    check_task,
    check_write_log,
    finish,
    parse_effects,
    read_log,
    read_timeline,
    spawn_worker,
    stage_names,
    wait_until,
    worker_result,
)
from tests.support.proxy import DROP, Action, FaultProxy, Hold, ProxyRequest

RUNS = size(2, 15)
STAGES = 5
TTL = 2.0
SKEW = 1.0
MARGIN = TTL / 10  # the holder's local deadline: last acknowledged send + TTL - TTL/10


class Partition:
    """The proxy's rule: from ``start`` (``time.monotonic``) on, every request for
    ``key`` is held, never answered; ``release`` drops them all at the end."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.start: float | None = None
        self.release = threading.Event()
        self.held = 0
        self._lock = threading.Lock()

    def __call__(self, request: ProxyRequest) -> Action | None:
        if self.start is None or request.key != self.key or time.monotonic() < self.start:
            return None
        with self._lock:
            self.held += 1
        return Hold(self.release, then=DROP, timeout=600)


@pytest.fixture
def proxy(moto_server_url: str) -> Iterator[FaultProxy]:
    with FaultProxy(moto_server_url) as running:
        yield running


def _one_run(
    rng: random.Random, proxy: FaultProxy, moto_url: str, bucket: str, tmp: Path
) -> dict[str, Any]:
    task_id = f"part-{uuid.uuid4().hex[:8]}"
    work = tmp / task_id
    work.mkdir()
    lease_key = f"{PREFIX}/{task_id}/_lease.json"
    partition = Partition(lease_key)
    proxy.rule = partition
    poll = rng.randrange(STAGES)
    # Renewal intervals that divide the TTL and ones that do not (issue 15's 25 s of 60).
    interval = rng.choice([TTL / 3, 0.45 * TTL, 0.8 * TTL])
    timeout = rng.choice([0.5, 1.0, 4.0 * TTL])  # a renewal gives up, or hangs past the TTL
    offset = rng.uniform(0, 2 * interval)
    cancel_check = rng.choice([0.2, 5.0])
    timeline, effects = work / "timeline", work / "effects"
    base = {
        "task_id": task_id,
        "stages": STAGES,
        "effects": str(effects),
        "timeline": str(timeline),
        "lease_ttl": TTL,
        "clock_skew_tolerance": SKEW,
        "max_attempts": 5,
    }
    holder_spec = dict(
        base,
        store={"kind": "s3", "bucket": bucket, "endpoint": proxy.url, "timeout": timeout},
        log=str(work / "log-holder"),
        renew_interval=interval,
        cancel_check_interval=cancel_check,
        poll_stage=poll,
        block=str(work / "hold"),
    )
    holder = spawn_worker(holder_spec, work / "holder.json")
    challenger = None
    try:
        wait_until(
            lambda: Path(f"{work / 'hold'}.ready").exists() or holder.poll() is not None,
            60,
            "the holder to reach its long stage",
        )
        partition.start = time.monotonic() + offset
        challenger_spec = dict(
            base,
            store={"kind": "s3", "bucket": bucket, "endpoint": moto_url},
            log=str(work / "log-challenger"),
            wait_for_lease=30.0,
        )
        challenger = spawn_worker(challenger_spec, work / "challenger.json")
        c_code = finish(challenger)
        h_code = finish(holder)
    finally:
        partition.release.set()
        if challenger is not None and challenger.poll() is None:
            challenger.kill()
        if holder.poll() is None:
            holder.kill()
    proxy.wait_settled()
    h_result = worker_result(work / "holder.json")
    c_result = worker_result(work / "challenger.json")
    problems: list[str] = []
    if h_code != 0 or h_result["outcome"] != "lease_lost":
        problems.append(f"the holder ended badly: exit {h_code} {h_result}")
    if c_code != 0 or c_result["outcome"] != "complete":
        problems.append(f"the challenger did not complete: exit {c_code} {c_result}")
    if "lease_takeover" not in c_result.get("events", []):
        problems.append(f"the challenger never took the lease over: {c_result.get('events')}")

    moments = read_timeline(timeline)
    stopped = [m for m in moments if m["what"] == "stage_cancelled" and m["pid"] == holder.pid]
    takeovers = [
        m
        for m in moments
        if m["what"] == "event" and m["kind"] == "lease_takeover" and m["pid"] == challenger.pid
    ]
    log = read_log([work / "log-holder", work / "log-challenger"])
    writes = [e for e in log if e.get("op") == "write"]
    mine = [e for e in writes if e["pid"] == holder.pid]
    theirs = [e for e in writes if e["pid"] == challenger.pid and e["ok"]]
    taken = [e for e in theirs if e["key"] == lease_key]
    acked = [e for e in mine if e["key"] == lease_key and e["ok"]]
    facts: dict[str, Any] = {"held": partition.held}
    if len(stopped) != 1 or len(takeovers) != 1 or not taken or not acked:
        problems.append(
            f"incomplete record: stage_cancelled {stopped}, lease_takeover {takeovers}, "
            f"challenger lease writes {len(taken)}, holder lease writes {len(acked)}"
        )
    else:
        stop, last_false = stopped[0]["t"], stopped[0]["last_false"]
        takeover = takeovers[0]["t"]
        takeover_sent = min(e["sent"] for e in taken)
        last_ack_sent = max(e["sent"] for e in acked)
        facts.update(
            gap=takeover_sent - stop,
            stop_after_ack=stop - last_ack_sent,
            takeover_after_ack=takeover_sent - last_ack_sent,
        )
        if not stop < takeover:
            problems.append(
                f"the holder saw ctx.cancelled {stop - takeover:.3f}s after the takeover"
            )
        if not last_false < takeover_sent:
            problems.append(
                f"the holder still saw ctx.cancelled false {last_false - takeover_sent:.3f}s "
                "after the takeover write was sent"
            )
        late = [e for e in mine if e["sent"] >= takeover_sent]
        problems += [f"the holder began a write after the takeover: {e}" for e in late]
        leaked = [e for e in acked if e["sent"] >= partition.start]
        problems += [f"a lease write went through the partition: {e}" for e in leaked]
    # None of the holder's writes landed after one of the challenger's (per key, in
    # revision order), and no revision was written twice.
    landed = [
        e
        for e in mine
        if e["ok"] and any(w["key"] == e["key"] and w["revision"] < e["revision"] for w in theirs)
    ]
    problems += [f"a write of the holder landed after the takeover: {e}" for e in landed]
    problems += check_write_log(writes)

    truth = StateStore(S3Backend(bucket, endpoint_url=moto_url, region_name="us-east-1"), PREFIX)
    check = check_task(truth, task_id, STAGES, effects)
    problems += check.problems
    ran = parse_effects(effects)
    name = stage_names(STAGES)[poll]
    expected = [(1, holder.pid), (2, challenger.pid)]
    if sorted(ran.get(name, [])) != expected:
        problems.append(f"{name}: side effects {ran.get(name)}, expected {expected}")
    return {
        "task_id": task_id,
        "poll": poll,
        "interval": round(interval, 2),
        "timeout": timeout,
        "problems": problems,
        **facts,
    }


@pytest.mark.usefixtures("atomic_moto")
def test_a_partitioned_holder_stops_before_the_takeover(
    proxy: FaultProxy,
    moto_server_url: str,
    s3_bucket: str,
    tmp_path: Path,
    summary: Callable[..., None],
) -> None:
    seed = campaign_seed()
    rng = random.Random(seed)
    runs = [_one_run(rng, proxy, moto_server_url, s3_bucket, tmp_path) for _ in range(RUNS)]
    problems = [f"{r['task_id']}: {p}" for r in runs for p in r["problems"]]
    gaps = [r["gap"] for r in runs if "gap" in r]
    after_ack = [r["stop_after_ack"] for r in runs if "stop_after_ack" in r]
    summary(
        runs=RUNS,
        seed=seed,
        lease_ttl=TTL,
        skew=SKEW,
        partitions=RUNS,
        held_lease_requests=sum(r["held"] for r in runs),
        renew_intervals=dict(Counter(r["interval"] for r in runs)),
        client_timeouts=dict(Counter(r["timeout"] for r in runs)),
        takeovers=len(gaps),
        stop_after_last_ack_s=f"{min(after_ack, default=0):.3f}..{max(after_ack, default=0):.3f}",
        stop_to_takeover_write_s=f"{min(gaps, default=0):.3f}..{max(gaps, default=0):.3f}",
        failures=len(problems),
    )
    assert not problems, "\n".join(problems[:40])


def test_a_holder_never_starts_a_stage_whose_running_write_was_answered_too_late(
    tmp_path: Path, summary: Callable[..., None]
) -> None:
    """The holder's RUNNING write of s01 lands, then the network goes quiet: its answer
    and every lease request wait. A challenger takes the lease over and completes the
    task. Then the answer arrives: the holder, long past its local deadline, must stop
    (``LeaseLost``) without running s01's body."""
    task_id = f"late-{uuid.uuid4().hex[:8]}"
    timeline, effects, stall = tmp_path / "timeline", tmp_path / "effects", tmp_path / "stall"
    base = {
        "store": {"kind": "local", "root": str(tmp_path / "store")},
        "task_id": task_id,
        "stages": 3,
        "effects": str(effects),
        "timeline": str(timeline),
        "lease_ttl": 1.0,
        "clock_skew_tolerance": 0.5,
    }
    holder_spec = dict(base, stall={"key": "/s01.json", "marker": str(stall)})
    holder = spawn_worker(holder_spec, tmp_path / "holder.json")
    try:
        wait_until(
            lambda: Path(f"{stall}.ready").exists() or holder.poll() is not None,
            60,
            "the holder's RUNNING write of s01 to land",
        )
        challenger = spawn_worker(dict(base, wait_for_lease=30.0), tmp_path / "challenger.json")
        c_code = finish(challenger)
    finally:
        Path(f"{stall}.go").touch()
    h_code = finish(holder)
    h_result = worker_result(tmp_path / "holder.json")
    c_result = worker_result(tmp_path / "challenger.json")
    assert c_code == 0 and c_result["outcome"] == "complete", c_result
    moments = read_timeline(timeline)
    takeover = next(
        m["t"] for m in moments if m.get("kind") == "lease_takeover" and m["pid"] == challenger.pid
    )
    late = [
        m for m in moments if m["what"] == "effect" and m["pid"] == holder.pid and m["t"] > takeover
    ]
    summary(
        holder=h_result["outcome"],
        holder_effects_after_takeover=len(late),
        failures=len(late) + (h_result["outcome"] != "lease_lost"),
    )
    assert h_code == 0 and h_result["outcome"] == "lease_lost", h_result
    assert late == [], f"the holder ran a stage after the takeover: {late}"
