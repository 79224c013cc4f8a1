"""Ending a run from another thread: ``request_stop`` (at the next attempt) and
``interrupt`` (the attempt in flight, by compare-and-swap against its RUNNING record).

The engine runs on a worker thread; the test thread plays the container's stop handler.
Every wait is on an event with a bounded timeout: stages block on ``threading.Event``s
the test sets, and storage races are ordered by a gate in front of the backend.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from eleanor_cloud.backends.base import Replace, Version, WriteMode
from eleanor_cloud.backends.memory import MemoryBackend
from eleanor_cloud.clock import utc_now
from eleanor_cloud.engine import (
    Backoff,
    EngineEvent,
    StageContext,
    TaskEngine,
    TaskSummary,
)
from eleanor_cloud.engine.lease import LeaseManager
from eleanor_cloud.errors import InvalidState
from eleanor_cloud.models import RetryPolicy, StageStatus
from eleanor_cloud.store import StateStore
from tests.engine.conftest import CountingBackend, FakeClock
from tests.engine.taskdefs import DemoState, FnStage, Out

WAIT = 30.0  # the bound on every wait; reaching it fails the test


def wait(event: threading.Event, what: str) -> None:
    if not event.wait(WAIT):
        raise AssertionError(f"timed out after {WAIT}s waiting for {what}")


@dataclass
class Blocker:
    """A stage body that signals ``started`` and then waits for ``go``."""

    started: threading.Event = field(default_factory=threading.Event)
    go: threading.Event = field(default_factory=threading.Event)
    saw_cancelled: list[bool] = field(default_factory=list)

    def __call__(self, state: DemoState, ctx: StageContext[DemoState]) -> Out:
        self.started.set()
        wait(self.go, "the test to let the stage finish")
        self.saw_cancelled.append(ctx.cancelled)
        return Out(value=ctx.attempt, note=ctx.stage_name)


def done(state: DemoState, ctx: StageContext[DemoState]) -> Out:
    return Out(value=ctx.attempt, note=ctx.stage_name)


class InThread:
    """Runs ``fn`` on a thread; ``result()`` joins (bounded) and returns or re-raises."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._fn = fn
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        try:
            self._value = self._fn()
        except BaseException as exc:  # handed to the test thread by result()
            self._error = exc

    def result(self) -> Any:
        self._thread.join(WAIT)
        if self._thread.is_alive():
            raise AssertionError(f"the thread did not finish within {WAIT}s")
        if self._error is not None:
            raise self._error
        return self._value


def events_of(engine: TaskEngine[DemoState]) -> list[EngineEvent]:
    seen: list[EngineEvent] = []
    engine.on_event = seen.append
    return seen


def stage_writes(backend: CountingBackend, name: str) -> list[str]:
    return [key for op, key in backend.log if op == "write" and key.endswith(f"/{name}.json")]


# -- request_stop ---------------------------------------------------------------------


def test_request_stop_during_a_stage_lets_it_finish_and_starts_no_next_stage(
    backend: CountingBackend, store: StateStore, clock: FakeClock
) -> None:
    block = Blocker()
    stages = [FnStage("s1", block), FnStage("s2", done), FnStage("s3", done)]
    engine = TaskEngine("t", stages, DemoState, store, clock=clock)
    events = events_of(engine)
    running = InThread(engine.run)
    wait(block.started, "s1 to start")
    engine.request_stop("scale-in")
    assert engine.stop_requested == "scale-in"
    block.go.set()
    summary: TaskSummary = running.result()

    assert summary.status is StageStatus.RUNNING and not summary.done
    assert summary.next_stage == "s2"
    assert summary.message == "scale-in"
    assert stages[1].calls == 0 and stages[2].calls == 0
    s1 = store.load("t", "s1", DemoState)
    assert s1.status is StageStatus.COMPLETE and s1.attempts == 1 == len(s1.history)
    assert stage_writes(backend, "s2") == []  # s2 was not even marked RUNNING
    lease = store.load_lease("t")
    assert lease is not None and lease.value.released
    assert [e.message for e in events if e.kind == "task_paused"] == ["scale-in"]

    # The stop belongs to that engine: a new one resumes at s2 and completes.
    again = [FnStage("s1", done), FnStage("s2", done), FnStage("s3", done)]
    resumed = TaskEngine("t", again, DemoState, store, clock=clock).run()
    assert resumed.status is StageStatus.COMPLETE
    assert [s.calls for s in again] == [0, 1, 1]


def test_request_stop_is_checked_before_a_retry(store: StateStore, clock: FakeClock) -> None:
    engine: TaskEngine[DemoState]

    def fail_and_stop(state: DemoState, ctx: StageContext[DemoState]) -> Out:
        # From another thread, as a stop handler would.
        InThread(lambda: engine.request_stop("deploy")).result()
        raise RuntimeError("flaky")

    stage = FnStage("s1", fail_and_stop)
    engine = TaskEngine(
        "t",
        [stage],
        DemoState,
        store,
        clock=clock,
        sleep=clock.sleep,
        backoff=Backoff(initial=5.0, jitter=0.0),
    )
    summary = engine.run()
    assert stage.calls == 1
    assert clock.sleeps == []  # no backoff for a retry never made
    assert summary.status is StageStatus.RUNNING and summary.next_stage == "s1"
    assert summary.message == "deploy"
    s1 = store.load("t", "s1", DemoState)
    assert s1.status is StageStatus.RETRY and s1.attempts == 1 == len(s1.history)


class _Seen(logging.Handler):
    def __init__(self, needle: str) -> None:
        super().__init__()
        self.needle = needle
        self.hit = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.needle in record.getMessage():
            self.hit.set()


def test_request_stop_ends_a_long_backoff_at_once(store: StateStore, clock: FakeClock) -> None:
    stage = FnStage("s1", lambda s, c: (_ for _ in ()).throw(RuntimeError("flaky")))
    # The default sleep: the engine waits on its stop event instead of time.sleep.
    engine = TaskEngine(
        "t", [stage], DemoState, store, clock=clock, backoff=Backoff(initial=600.0, jitter=0.0)
    )
    seen = _Seen("retrying in")
    logger = logging.getLogger("eleanor_cloud.engine")
    logger.addHandler(seen)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        running = InThread(engine.run)
        wait(seen.hit, "the engine to enter its 600 s backoff")
        engine.request_stop("shutdown")
        summary = running.result()  # within WAIT, not 600 s
    finally:
        logger.removeHandler(seen)
        logger.setLevel(old_level)
    assert stage.calls == 1
    assert summary.status is StageStatus.RUNNING and summary.message == "shutdown"
    lease = store.load_lease("t")
    assert lease is not None and lease.value.released


def test_stop_reasons_must_be_non_empty_strings(store: StateStore) -> None:
    engine = TaskEngine("t", [FnStage("s1", done)], DemoState, store)
    with pytest.raises(InvalidState, match="reason"):
        engine.request_stop("")
    with pytest.raises(InvalidState, match="reason"):
        engine.interrupt(None)  # type: ignore[arg-type]
    assert engine.stop_requested is None


# -- interrupt ------------------------------------------------------------------------


def test_interrupt_mid_stage_records_the_attempt_and_the_late_outcome_never_lands(
    backend: CountingBackend, store: StateStore, clock: FakeClock
) -> None:
    block = Blocker()
    stages = [FnStage("s1", done), FnStage("s2", block), FnStage("s3", done)]
    engine = TaskEngine("t", stages, DemoState, store, clock=clock)
    events = events_of(engine)
    running = InThread(engine.run)
    wait(block.started, "s2 to start")

    assert engine.interrupt("spot reclaim") is True
    # Recorded and released while the stage's code is still running.
    record = store.load_record("t", "s2", DemoState)
    s2 = record.value
    assert s2.status is StageStatus.RETRY
    assert s2.attempts == 1 == len(s2.history)
    (entry,) = s2.history
    assert entry.end_status is StageStatus.RETRY
    assert entry.message == "interrupted: spot reclaim"
    assert entry.begin_status is StageStatus.CREATED
    lease = store.load_lease("t")
    assert lease is not None and lease.value.released
    writes_before = list(backend.log)
    assert [
        (e.kind, e.stage_name, e.attempt, e.status) for e in events if e.kind == "stage_interrupted"
    ] == [("stage_interrupted", "s2", 1, StageStatus.RETRY)]

    block.go.set()  # the stage now "completes"
    summary: TaskSummary = running.result()
    assert block.saw_cancelled == [True]  # ctx.cancelled told the stage
    assert summary.status is StageStatus.RUNNING and not summary.done
    assert summary.next_stage == "s2"
    assert summary.message == "interrupted: spot reclaim"
    # Nothing was written after the interruption: not s2's outcome, not s3.
    assert [w for w in backend.log[len(writes_before) :] if w[0] == "write"] == []
    assert store.load_record("t", "s2", DemoState).write_id == record.write_id
    assert stages[2].calls == 0

    again = [FnStage("s1", done), FnStage("s2", done), FnStage("s3", done)]
    resumed = TaskEngine("t", again, DemoState, store, clock=clock).run()
    assert resumed.status is StageStatus.COMPLETE
    assert [s.calls for s in again] == [0, 1, 1]
    s2 = store.load("t", "s2", DemoState)
    assert s2.attempts == 2 == len(s2.history)
    assert [h.end_status for h in s2.history] == [StageStatus.RETRY, StageStatus.COMPLETE]
    assert s2.history[0].message == "interrupted: spot reclaim"  # kept as written
    assert s2.history[1].begin_status is StageStatus.RETRY
    assert s2.result == Out(value=2, note="s2")


def test_interrupt_when_the_budget_is_spent_records_error(
    store: StateStore, clock: FakeClock
) -> None:
    block = Blocker()
    engine = TaskEngine(
        "t",
        [FnStage("s1", block), FnStage("s2", done)],
        DemoState,
        store,
        clock=clock,
        max_attempts=1,
    )
    events = events_of(engine)
    running = InThread(engine.run)
    wait(block.started, "s1 to start")
    assert engine.interrupt("stopTimeout reached") is True
    block.go.set()
    summary: TaskSummary = running.result()
    assert summary.status is StageStatus.ERROR and summary.done
    s1 = store.load("t", "s1", DemoState)
    assert s1.status is StageStatus.ERROR
    assert [h.end_status for h in s1.history] == [StageStatus.ERROR]
    assert s1.attempts == len(s1.history) == 1
    assert [e.status for e in events if e.kind == "stage_interrupted"] == [StageStatus.ERROR]
    assert [e.kind for e in events][-1] == "task_failed"


def test_interrupt_with_no_attempt_running_returns_false_and_stops_the_run(
    store: StateStore, clock: FakeClock
) -> None:
    stage = FnStage("s1", done)
    engine = TaskEngine("t", [stage], DemoState, store, clock=clock)
    assert engine.interrupt("too late") is False
    summary = engine.run()
    assert stage.calls == 0
    assert summary.status is StageStatus.RUNNING and summary.message == "too late"
    assert engine.interrupt("again") is False  # after the run: nothing in flight
    lease = store.load_lease("t")
    assert lease is not None and lease.value.released


# -- interrupt racing the stage's own outcome -----------------------------------------


class Gate:
    """Holds outcome writes to one stage key until the test lets each through.

    Armed by the stage body (so the RUNNING write passes); every later write to the
    key waits at the gate in arrival order. ``arrived(n)`` waits until n writers wait;
    ``let(i)`` lets the i-th through and waits until its write returned or failed.
    """

    def __init__(self, inner: CountingBackend, key_suffix: str) -> None:
        self.inner = inner
        self.key_suffix = key_suffix
        self.armed = threading.Event()
        self._cond = threading.Condition()
        self._arrivals = 0
        self._permits: list[threading.Event] = [threading.Event() for _ in range(2)]
        self._done: list[threading.Event] = [threading.Event() for _ in range(2)]
        self.outcomes: list[str] = ["", ""]

    @property
    def description(self) -> str:
        return self.inner.description

    def read(self, key: str) -> tuple[bytes, Version]:
        return self.inner.read(key)

    def delete(self, key: str, if_version: Version | None = None) -> None:
        self.inner.delete(key, if_version)

    def list(self, prefix: str, delimiter: str | None = None) -> Iterator[str]:
        return self.inner.list(prefix, delimiter)

    def write(self, key: str, data: bytes, mode: WriteMode) -> Version:
        if not (self.armed.is_set() and key.endswith(self.key_suffix)):
            return self.inner.write(key, data, mode)
        assert isinstance(mode, Replace)
        with self._cond:
            index = self._arrivals
            self._arrivals += 1
            self._cond.notify_all()
        wait(self._permits[index], f"the test to let writer {index} through")
        try:
            version = self.inner.write(key, data, mode)
        except Exception as exc:
            self.outcomes[index] = type(exc).__name__
            raise
        else:
            self.outcomes[index] = "ok"
            return version
        finally:
            self._done[index].set()

    def arrived(self, n: int) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: self._arrivals >= n, WAIT):
                raise AssertionError(f"{n} writers did not reach the gate within {WAIT}s")

    def let(self, index: int) -> None:
        self._permits[index].set()
        wait(self._done[index], f"writer {index}'s write")


@pytest.mark.parametrize("first", ["stage", "interrupt"])
def test_interrupt_racing_the_stage_outcome_exactly_one_is_recorded(
    backend: CountingBackend, clock: FakeClock, first: str
) -> None:
    gate = Gate(backend, "/t/s1.json")
    store = StateStore(gate, "pfx", clock=clock)

    def arm(state: DemoState, ctx: StageContext[DemoState]) -> Out:
        gate.armed.set()
        return Out(value=1, note="s1")

    stages = [FnStage("s1", arm), FnStage("s2", done)]
    engine = TaskEngine("t", stages, DemoState, store, clock=clock)
    running = InThread(engine.run)
    gate.arrived(1)  # the stage's outcome write waits at the gate...
    interrupting = InThread(lambda: engine.interrupt("race"))
    gate.arrived(2)  # ...and so does the interruption's: both CAS
    order = [0, 1] if first == "stage" else [1, 0]
    gate.let(order[0])
    gate.let(order[1])
    interrupted = interrupting.result()
    summary: TaskSummary = running.result()

    assert gate.outcomes[order[0]] == "ok" and gate.outcomes[order[1]] == "Conflict"
    s1 = store.load("t", "s1", DemoState)
    assert s1.attempts == 1 == len(s1.history)  # exactly one outcome recorded
    if first == "stage":
        assert interrupted is False
        assert s1.status is StageStatus.COMPLETE
        assert s1.history[0].end_status is StageStatus.COMPLETE
        assert summary.message == "race"  # the run stopped at the boundary
    else:
        assert interrupted is True
        assert s1.status is StageStatus.RETRY
        assert s1.history[0].message == "interrupted: race"
        assert summary.message == "interrupted: race"
    assert summary.status is StageStatus.RUNNING
    assert stages[1].calls == 0  # either way no further stage
    lease = store.load_lease("t")
    assert lease is not None and lease.value.released


def test_interrupt_racing_completion_unordered_never_records_two_outcomes() -> None:
    store = StateStore(MemoryBackend("race"), "pfx")
    for round_no in range(25):
        task = f"t{round_no}"
        go = threading.Event()

        def body(
            state: DemoState,
            ctx: StageContext[DemoState],
            go: threading.Event = go,
        ) -> Out:
            wait(go, "the race to start")
            return Out(value=1)

        engine = TaskEngine(task, [FnStage("s1", body)], DemoState, store)
        started = threading.Event()
        engine.on_event = lambda e, started=started: (
            started.set() if e.kind == "stage_started" else None
        )
        running = InThread(engine.run)
        wait(started, "s1 to start")
        go.set()
        interrupted = engine.interrupt("race")
        summary = running.result()
        s1 = store.load(task, "s1", DemoState)
        assert s1.attempts == 1 == len(s1.history), (round_no, s1.history)
        if interrupted:
            assert s1.status is StageStatus.RETRY
            assert s1.history[0].message == "interrupted: race"
            assert summary.next_stage == "s1"
        else:
            assert s1.status is StageStatus.COMPLETE
            assert summary.status is StageStatus.COMPLETE
        lease = store.load_lease(task)
        assert lease is not None and lease.value.released


# -- the lease ------------------------------------------------------------------------


def test_lease_release_is_idempotent_also_from_two_threads() -> None:
    store = StateStore(MemoryBackend("lease"), "pfx")
    lease = LeaseManager(store, "t", holder="me", ttl=60.0, clock=utc_now, sleep=lambda _s: None)
    lease.acquire()
    lease.start_renewing()
    releasers = [InThread(lease.release) for _ in range(2)]
    for releaser in releasers:
        releaser.result()
    lease.release()  # a third call: still a no-op
    stored = store.load_lease("t")
    assert stored is not None and stored.value.released and stored.value.holder == "me"
    assert stored.revision == 2  # created, released once
    assert not lease.lost

    never = LeaseManager(store, "u", holder="me", ttl=60.0, clock=utc_now, sleep=lambda _s: None)
    never.release()
    never.release()  # never acquired: both no-ops
    assert store.load_lease("u") is None


def test_policy_none_interrupt_is_final(store: StateStore, clock: FakeClock) -> None:
    block = Blocker()
    engine = TaskEngine(
        "t", [FnStage("s1", block)], DemoState, store, clock=clock, retry_policy=RetryPolicy.NONE
    )
    running = InThread(engine.run)
    wait(block.started, "s1 to start")
    assert engine.interrupt("no retries") is True
    block.go.set()
    assert running.result().status is StageStatus.ERROR
    assert store.load("t", "s1", DemoState).history[0].end_status is StageStatus.ERROR
