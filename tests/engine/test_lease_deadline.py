"""The lease's time bounds: a holder stops by its own deadline, no wait outlives a run's
deadline, and a takeover can be carried across short invocations (issue 15, items 1, 4).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from eleanor_cloud.backends.base import Version, WriteMode
from eleanor_cloud.backends.memory import MemoryBackend
from eleanor_cloud.clock import utc_now
from eleanor_cloud.engine import StageContext, TaskEngine
from eleanor_cloud.engine.lease_watch import LeaseWatch
from eleanor_cloud.engine.options import LeaseOptions
from eleanor_cloud.errors import InvalidState, LeaseHeld, LeaseLost
from eleanor_cloud.models import StageStatus
from eleanor_cloud.store import StateStore
from tests.engine.conftest import FakeClock
from tests.engine.taskdefs import DemoState, FnStage, Out
from tests.engine.test_lease import put_lease


class StallingBackend:
    """A memory backend whose requests for chosen keys hang until released (a stalled
    connection: the request neither succeeds nor fails)."""

    def __init__(self) -> None:
        self.inner = MemoryBackend("stall")
        self.stall: set[str] = set()  # key suffixes whose requests hang
        self.release = threading.Event()
        self.hanging = threading.Semaphore(0)  # one release per request that started to hang
        self.writes: list[str] = []

    @property
    def description(self) -> str:
        return "stalling memory"

    def _maybe_hang(self, key: str) -> None:
        if any(key.endswith(s) for s in self.stall):
            self.hanging.release()
            self.release.wait(30)

    def read(self, key: str) -> tuple[bytes, Version]:
        self._maybe_hang(key)
        return self.inner.read(key)

    def write(self, key: str, data: bytes, mode: WriteMode) -> Version:
        self._maybe_hang(key)
        self.writes.append(key)
        return self.inner.write(key, data, mode)

    def delete(self, key: str, if_version: Version | None = None) -> None:
        self.inner.delete(key, if_version)

    def list(self, prefix: str, delimiter: str | None = None) -> Iterator[str]:
        return self.inner.list(prefix, delimiter)


def test_the_renew_interval_must_leave_a_renewal_before_the_local_deadline() -> None:
    assert LeaseOptions(ttl=60, renew_interval=25).interval == 25  # TTL 60, interval 25: fine
    with pytest.raises(InvalidState, match="renew_interval"):
        LeaseOptions(ttl=60, renew_interval=55)  # TTL - margin is 54 s
    with pytest.raises(InvalidState, match="renew_interval"):
        TaskEngine(
            "t",
            [FnStage("a", lambda s, c: Out())],
            DemoState,
            StateStore(MemoryBackend("x")),
            lease_ttl=10,
            renew_interval=10,
        )


def test_a_holder_whose_renewal_hangs_stops_by_its_local_deadline() -> None:
    """ctx.cancelled turns true TTL - margin after the last acknowledged renewal was
    sent, while the next renewal request still hangs, and the holder writes nothing
    more: a challenger (who waits TTL + skew) can never overlap with it."""
    backend = StallingBackend()
    store = StateStore(backend, "pfx")
    seen: dict[str, Any] = {}

    def long(state: DemoState, ctx: StageContext[DemoState]) -> Out:
        backend.stall.add("_lease.json")  # from now on every lease request hangs
        assert backend.hanging.acquire(timeout=10), "the renewer never tried to renew"
        started = time.monotonic()
        while not ctx.cancelled:  # polls; the stage's own loop, as users write it
            assert time.monotonic() - started < 10, "ctx.cancelled never turned true"
        seen["after"] = time.monotonic() - started
        seen["renewal_still_hanging"] = not backend.release.is_set()
        return Out()

    engine = TaskEngine(
        "t",
        [FnStage("a", long)],
        DemoState,
        store,
        lease_ttl=1.0,
        renew_interval=0.3,
        clock=utc_now,
    )
    try:
        with pytest.raises(LeaseLost, match="no renewal acknowledged"):
            engine.run()
    finally:
        backend.release.set()
    assert seen["renewal_still_hanging"]
    a = store.load("t", "a", DemoState)
    assert a.status is StageStatus.RUNNING  # the outcome was never written
    assert backend.writes.count("pfx/t/a.json") == 1  # only the RUNNING record


def test_ctx_cancelled_never_blocks_on_a_hanging_read() -> None:
    """The cancel check's GET hangs: ctx.cancelled answers within PROBE_WAIT anyway."""
    backend = StallingBackend()
    store = StateStore(backend, "pfx")
    took: list[float] = []

    def probe(state: DemoState, ctx: StageContext[DemoState]) -> Out:
        backend.stall.add("/a.json")  # the stage object's reads (the cancel check) hang
        for _ in range(3):
            started = time.monotonic()
            assert not ctx.cancelled
            took.append(time.monotonic() - started)
        backend.stall.clear()
        backend.release.set()
        return Out()

    summary = TaskEngine(
        "t", [FnStage("a", probe)], DemoState, store, cancel_check_interval=0, clock=utc_now
    ).run()
    assert summary.status is StageStatus.COMPLETE
    assert max(took) < 5, took  # bounded by PROBE_WAIT (1 s), never the hung request


def test_waiting_for_a_lease_never_outlives_the_deadline(clock: FakeClock) -> None:
    """A dead holder's 60 s lease and a 2 s budget: the watch would need 65 s, so the
    run does not start it (no time paid for a wait that cannot end in time) and hands
    the caller the watch to carry on."""
    store = StateStore(MemoryBackend("w"), "pfx", clock=clock)
    engine = TaskEngine(
        "t",
        [FnStage("a", lambda s, c: Out())],
        DemoState,
        store,
        clock=clock,
        sleep=clock.sleep,
    )
    engine.bind()
    put_lease(store, clock, holder="dead", expires_in=-100)  # looks long expired
    with pytest.raises(LeaseHeld) as info:
        engine.run(time_budget=2.0)
    assert sum(clock.sleeps) == 0.0
    watch = info.value.watch
    assert isinstance(watch, LeaseWatch) and watch.seconds == 0.0
    assert info.value.needed_seconds == 65.0
    # With a budget the watch fits in, it is watched within the run instead.
    clock.sleeps.clear()
    summary = engine.run(time_budget=120.0)
    assert summary.status is StageStatus.COMPLETE and 65.0 <= sum(clock.sleeps) <= 120.0


def test_a_watch_carried_across_invocations_takes_a_dead_lease_over(clock: FakeClock) -> None:
    """Invocation 1 watches until its deadline; the orchestrator waits 70 s; invocation 2
    credits the watch (same version) and takes over without watching again."""
    store = StateStore(MemoryBackend("w"), "pfx", clock=clock)

    def engine() -> TaskEngine[DemoState]:
        return TaskEngine(
            "t",
            [FnStage("a", lambda s, c: Out(value=1))],
            DemoState,
            store,
            clock=clock,
            sleep=clock.sleep,
        )

    engine().bind()
    put_lease(store, clock, holder="dead", expires_in=-100)
    with pytest.raises(LeaseHeld) as info:
        engine().run(time_budget=1.0)
    carried = info.value.watch.plus(70.0)  # the state machine's Wait
    clock.advance(70.0)
    clock.sleeps.clear()
    summary = engine().run(time_budget=1.0, lease_watch=carried)
    assert summary.status is StageStatus.COMPLETE
    assert sum(clock.sleeps) == 0  # no second watch
    lease = store.load_lease("t")
    assert lease is not None and lease.value.epoch == 2


def test_a_carried_watch_of_another_version_counts_for_nothing(clock: FakeClock) -> None:
    store = StateStore(MemoryBackend("w"), "pfx", clock=clock)
    engine = TaskEngine(
        "t", [FnStage("a", lambda s, c: Out())], DemoState, store, clock=clock, sleep=clock.sleep
    )
    engine.bind()
    put_lease(store, clock, holder="alive", expires_in=600)
    stale = LeaseWatch("some-older-version", 10_000.0)
    with pytest.raises(LeaseHeld):
        engine.run(time_budget=1.0, lease_watch=stale)
    with pytest.raises(InvalidState, match="lease_watch"):
        engine.run(lease_watch={"version": "v", "seconds": 1})  # type: ignore[arg-type]
    assert LeaseWatch.from_dict(stale.to_dict()) == stale
    with pytest.raises(InvalidState, match="seconds"):
        LeaseWatch("v", -1)
