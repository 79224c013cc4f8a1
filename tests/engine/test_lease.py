"""Lease: create/replace/held/wait/takeover, fencing of a zombie, renewal, two engines."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest

from eleanor_cloud.clock import format_ts, parse_ts
from eleanor_cloud.engine import StageContext, TaskEngine
from eleanor_cloud.engine.fence import fence_task
from eleanor_cloud.engine.lease import LeaseManager
from eleanor_cloud.errors import Conflict, LeaseHeld, LeaseLost
from eleanor_cloud.models import StageStatus
from eleanor_cloud.store import Lease, StateStore
from tests.engine.conftest import CountingBackend, FakeClock
from tests.engine.taskdefs import DemoState, FnStage, Out


def ok(state: DemoState, ctx: Any) -> Out:
    return Out(value=ctx.attempt)


def store_as(backend: Any, writer: str, clock: FakeClock) -> StateStore:
    return StateStore(backend, "pfx", writer=writer, clock=clock)


def put_lease(
    store: StateStore,
    clock: FakeClock,
    *,
    holder: str = "other",
    epoch: int = 1,
    expires_in: float = 60.0,
    released: bool = False,
) -> None:
    now = clock()
    lease = Lease(
        task_id="t",
        holder=holder,
        epoch=epoch,
        acquired_at=format_ts(now),
        expires_at=format_ts(now + timedelta(seconds=expires_in)),
        ttl_seconds=60.0,
        released=released,
    )
    for _ in range(100):  # a running holder's renewer may replace it in between
        current = store.load_lease("t")
        try:
            store.write_lease(lease, replaces=current)
            return
        except Conflict:
            continue
    raise AssertionError("could not replace the lease")


def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.005)


def test_fresh_lease_is_created_and_released_not_deleted(
    store: StateStore, clock: FakeClock
) -> None:
    seen: list[Lease] = []

    def look(state: DemoState, ctx: Any) -> Out:
        record = StateStore(store.backend, "pfx").load_lease("t")
        assert record is not None
        seen.append(record.value)
        return Out()

    TaskEngine(
        "t", [FnStage("a", look)], DemoState, store, clock=clock, lease_ttl=30, holder="me"
    ).run()
    held = seen[0]
    assert (held.holder, held.epoch, held.released, held.ttl_seconds) == ("me", 1, False, 30)
    assert parse_ts(held.expires_at) == clock() + timedelta(seconds=30)
    after = store.load_lease("t")
    assert after is not None
    assert after.value.released and after.value.epoch == 1


def test_a_released_lease_is_reacquired_with_the_next_epoch_without_fencing(
    backend: CountingBackend, store: StateStore, clock: FakeClock
) -> None:
    # The first run stops after "a" (b cannot fit its time budget) and releases the lease.
    first = TaskEngine(
        "t",
        [FnStage("a", ok), FnStage("b", ok, expected_duration=60.0)],
        DemoState,
        store,
        clock=clock,
    ).run(time_budget=30.0)
    assert first.next_stage == "b"
    before = {n: r.revision for n, r in store.load_task_records("t", DemoState).items()}
    backend.reset()
    TaskEngine("t", [FnStage("a", ok), FnStage("b", ok)], DemoState, store, clock=clock).run()
    lease = store.load_lease("t")
    assert lease is not None and lease.value.epoch == 2 and lease.value.released
    after = {n: r.revision for n, r in store.load_task_records("t", DemoState).items()}
    assert after["a"] == before["a"]  # completed stage untouched: no fence after a release
    assert not [k for op, k in backend.log if op == "write" and "/a.json" in k]


@pytest.mark.parametrize("expires_in", [60.0, -3.0])  # -3s is within the 5s skew tolerance
def test_a_live_lease_raises_lease_held_and_writes_no_state(
    store: StateStore, clock: FakeClock, expires_in: float
) -> None:
    TaskEngine("t", [FnStage("a", ok)], DemoState, store, clock=clock).bind()
    put_lease(store, clock, holder="host-9/123", expires_in=expires_in)
    stage = FnStage("a", ok)
    with pytest.raises(LeaseHeld) as info:
        TaskEngine("t", [stage], DemoState, store, clock=clock).run()
    assert info.value.holder == "host-9/123"
    assert "host-9/123" in str(info.value)
    assert stage.calls == 0
    assert store.load_task("t", DemoState) == {}


def test_wait_for_lease_polls_with_the_injected_sleep_then_gives_up(
    store: StateStore, clock: FakeClock
) -> None:
    TaskEngine("t", [FnStage("a", ok)], DemoState, store, clock=clock).bind()
    put_lease(store, clock, expires_in=3600)
    with pytest.raises(LeaseHeld):
        TaskEngine(
            "t",
            [FnStage("a", ok)],
            DemoState,
            store,
            clock=clock,
            sleep=clock.sleep,
            wait_for_lease=20,
            lease_ttl=40,
        ).run()
    assert clock.sleeps and sum(clock.sleeps) == pytest.approx(20)
    assert max(clock.sleeps) <= 10  # polls at least every ttl/4


def test_wait_for_lease_acquires_once_the_holder_releases(
    store: StateStore, clock: FakeClock
) -> None:
    TaskEngine("t", [FnStage("a", ok)], DemoState, store, clock=clock).bind()
    put_lease(store, clock, expires_in=3600)
    polls: list[float] = []

    def sleep(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) == 2:
            put_lease(
                store_as(store.backend, "x", clock), clock, epoch=1, expires_in=3600, released=True
            )

    summary = TaskEngine(
        "t", [FnStage("a", ok)], DemoState, store, clock=clock, sleep=sleep, wait_for_lease=600
    ).run()
    assert summary.status is StageStatus.COMPLETE
    assert len(polls) == 2
    lease = store.load_lease("t")
    assert lease is not None and lease.value.epoch == 2


def test_an_expired_lease_is_taken_over_and_the_task_fenced(
    backend: CountingBackend, clock: FakeClock
) -> None:
    old = store_as(backend, "old-holder", clock)
    TaskEngine("t", [FnStage(n, ok) for n in "abcd"], DemoState, old, clock=clock).bind()
    # the old holder completed a, was running b, and never wrote c or d
    old.create(
        DemoState(
            task_id="t",
            stage_name="a",
            status=StageStatus.COMPLETE,
            attempts=1,
            history=[],
            result=Out(value=1),
        ),
        epoch=1,
    )
    old.create(
        DemoState(task_id="t", stage_name="b", status=StageStatus.RUNNING, attempts=1), epoch=1
    )
    put_lease(old, clock, holder="old-holder", expires_in=10)
    clock.advance(16)  # past expiry + 5s tolerance
    new = store_as(backend, "new-holder", clock)
    events: list[Any] = []
    stages = [FnStage(n, ok) for n in "abcd"]
    summary = TaskEngine(
        "t", stages, DemoState, new, clock=clock, sleep=clock.sleep, on_event=events.append
    ).run()
    assert summary.status is StageStatus.COMPLETE
    assert [s.calls for s in stages] == [0, 1, 1, 1]
    assert events[0].kind == "lease_takeover"
    records = new.load_task_records("t", DemoState)
    assert all(r.epoch == 2 and r.writer == "new-holder" for r in records.values())
    assert records["a"].revision == 2  # fenced: rewritten once at epoch 2, unchanged
    b = records["b"].value
    assert b.attempts == 2 == len(b.history)
    interrupted = b.history[0]
    assert interrupted.end_status is StageStatus.RETRY
    assert interrupted.message.startswith("interrupted: attempt 1 was found RUNNING")
    assert interrupted.attempt == 1
    assert b.history[1].end_status is StageStatus.COMPLETE
    lease = new.load_lease("t")
    assert lease is not None and lease.value.epoch == 2 and lease.value.holder != "old-holder"


def test_after_a_fence_no_cached_version_of_the_old_holder_can_write(
    backend: CountingBackend, clock: FakeClock
) -> None:
    zombie = store_as(backend, "zombie", clock)
    TaskEngine("t", [FnStage(n, ok) for n in "abc"], DemoState, zombie, clock=clock).bind()
    a = zombie.create(DemoState(task_id="t", stage_name="a", status=StageStatus.COMPLETE), epoch=1)
    b = zombie.create(DemoState(task_id="t", stage_name="b", status=StageStatus.RUNNING), epoch=1)
    successor = store_as(backend, "successor", clock)
    loaded = successor.load_task_records("t", DemoState)
    fenced = fence_task(successor, "t", ["a", "b", "c"], DemoState, loaded, epoch=2)
    assert {n: r.epoch for n, r in fenced.items()} == {"a": 2, "b": 2, "c": 2}
    assert fenced["c"].value.status is StageStatus.CREATED
    before = {
        n: (r.revision, r.writer) for n, r in successor.load_task_records("t", DemoState).items()
    }
    # The zombie's records are all it has: every one of them is stale now.
    for record, state in (
        (a, a.value),
        (b, b.value.model_copy(update={"status": StageStatus.COMPLETE})),
    ):
        with pytest.raises(Conflict):
            zombie.save(state, replaces=record, epoch=1)
    with pytest.raises(Conflict):  # its first write of c would have been a create
        zombie.create(DemoState(task_id="t", stage_name="c", status=StageStatus.RUNNING), epoch=1)
    after = {
        n: (r.revision, r.writer) for n, r in successor.load_task_records("t", DemoState).items()
    }
    assert after == before


def test_a_paused_holder_is_fenced_out_and_stops_with_lease_lost(
    backend: CountingBackend, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A holder frozen right after its lease check: no renewals, no local deadline
    # (either would stop it first). What stops it must be the storage fence.
    monkeypatch.setattr(LeaseManager, "start_renewing", lambda self: None)
    monkeypatch.setattr(LeaseManager, "_held_until", lambda self, sent: None)
    inside, resume = threading.Event(), threading.Event()

    def slow(state: DemoState, ctx: Any) -> Out:
        inside.set()
        assert resume.wait(10)
        return Out(value=-1)

    zombie_store = store_as(backend, "zombie", clock)
    zombie = TaskEngine(
        "t",
        [FnStage("a", ok), FnStage("b", slow), FnStage("c", ok)],
        DemoState,
        zombie_store,
        clock=clock,
        lease_ttl=10,
    )
    outcome: list[BaseException] = []

    def run_zombie() -> None:
        try:
            zombie.run()
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run_zombie)
    thread.start()
    assert inside.wait(10)
    clock.advance(20)
    successor_stages = [FnStage(n, ok) for n in "abc"]
    # The successor takes over only after watching the lease stand still for its TTL
    # plus the skew tolerance, measured on the injected clock: so it sleeps on it too.
    summary = TaskEngine(
        "t",
        successor_stages,
        DemoState,
        store_as(backend, "successor", clock),
        clock=clock,
        sleep=clock.sleep,
    ).run()
    assert summary.status is StageStatus.COMPLETE
    assert sum(clock.sleeps) >= 10 + 5  # it watched: the zombie's TTL + the tolerance
    assert [s.calls for s in successor_stages] == [0, 1, 1]
    snapshot = {
        n: (r.revision, r.writer, r.epoch)
        for n, r in StateStore(backend, "pfx").load_task_records("t", DemoState).items()
    }
    lease_after = StateStore(backend, "pfx").load_lease("t")
    backend.reset()
    resume.set()
    thread.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], LeaseLost)
    assert "fenced out" in str(outcome[0])
    # the zombie did try to write b's outcome, and it did not land
    assert ("write", "pfx/t/b.json") in backend.log
    final = {
        n: (r.revision, r.writer, r.epoch)
        for n, r in StateStore(backend, "pfx").load_task_records("t", DemoState).items()
    }
    assert final == snapshot
    assert all(writer == "successor" for _, writer, _ in final.values())
    assert StateStore(backend, "pfx").load("t", "b", DemoState).result == Out(value=2)
    assert StateStore(backend, "pfx").load_lease("t") == lease_after


def test_the_lease_is_renewed_while_a_stage_runs(
    backend: CountingBackend, clock: FakeClock
) -> None:
    reader = StateStore(backend, "pfx")

    def renewals() -> int:
        lease = reader.load_lease("t")
        return lease.value.renewals if lease is not None else -1

    def long(state: DemoState, ctx: Any) -> Out:
        # 100 s in all, in steps shorter than the 27 s local window (TTL - margin):
        # without renewals the 30 s lease would have expired three times over.
        for _ in range(4):
            seen = renewals()
            clock.advance(25)
            # two more: at least one was sent after the step, so it moved the deadline
            wait_until(lambda seen=seen: renewals() >= seen + 2)
            assert not ctx.cancelled
        return Out()

    store = store_as(backend, "me", clock)
    summary = TaskEngine(
        "t", [FnStage("a", long)], DemoState, store, clock=clock, lease_ttl=30, renew_interval=0.01
    ).run()
    assert summary.status is StageStatus.COMPLETE
    lease = reader.load_lease("t")
    assert lease is not None
    assert lease.value.renewals >= 2 and lease.value.released
    assert lease.value.epoch == 1


def test_a_refused_renewal_marks_the_lease_lost_and_nothing_more_is_written(
    backend: CountingBackend, clock: FakeClock
) -> None:
    thief = store_as(backend, "thief", clock)

    def notices(state: DemoState, ctx: StageContext[DemoState]) -> Out:
        assert not ctx.cancelled
        put_lease(thief, clock, holder="thief", epoch=2)
        wait_until(lambda: ctx.cancelled)
        return Out()

    events: list[Any] = []
    stages = [FnStage("a", notices), FnStage("b", ok)]
    with pytest.raises(LeaseLost, match="thief"):
        TaskEngine(
            "t",
            stages,
            DemoState,
            store_as(backend, "me", clock),
            clock=clock,
            renew_interval=0.01,
            on_event=events.append,
        ).run()
    a = thief.load("t", "a", DemoState)
    assert a.status is StageStatus.RUNNING  # the outcome was not written
    assert thief.load_task("t", DemoState).keys() == {"a"}
    assert stages[1].calls == 0
    assert "lease_lost" in [e.kind for e in events]
    lease = thief.load_lease("t")
    assert lease is not None and lease.value.holder == "thief" and not lease.value.released


def test_two_engines_at_once_exactly_one_runs_and_the_other_gets_lease_held(
    backend: CountingBackend, clock: FakeClock
) -> None:
    calls: list[tuple[str, str]] = []
    lock = threading.Lock()
    other_done = threading.Event()
    start = threading.Barrier(2)
    results: dict[str, Any] = {}

    def body(who: str) -> Any:
        def run(state: DemoState, ctx: Any) -> Out:
            with lock:
                calls.append((who, ctx.stage_name))
            assert other_done.wait(10)  # hold the lease until the other one has given up
            return Out()

        return run

    def go(who: str) -> None:
        engine = TaskEngine(
            "t",
            [FnStage(n, body(who)) for n in "ab"],
            DemoState,
            store_as(backend, who, clock),
            clock=clock,
        )
        start.wait()
        try:
            results[who] = engine.run()
        except LeaseHeld as exc:
            results[who] = exc
            other_done.set()

    threads = [threading.Thread(target=go, args=(w,)) for w in ("x", "y")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    held = [w for w, r in results.items() if isinstance(r, LeaseHeld)]
    ran = [w for w, r in results.items() if not isinstance(r, LeaseHeld)]
    assert len(held) == 1 and len(ran) == 1
    assert results[ran[0]].status is StageStatus.COMPLETE
    assert calls == [(ran[0], "a"), (ran[0], "b")]


def test_two_engines_at_once_the_waiting_one_finds_the_task_done(
    backend: CountingBackend, clock: FakeClock
) -> None:
    runs: list[str] = []
    waiting, finished = threading.Event(), threading.Event()
    start = threading.Barrier(2)
    results: dict[str, Any] = {}

    def body(who: str) -> Any:
        def run(state: DemoState, ctx: Any) -> Out:
            runs.append(f"{who}:{ctx.stage_name}")
            assert waiting.wait(10)  # the other engine is polling the lease now
            return Out()

        return run

    def sleep(seconds: float) -> None:
        waiting.set()
        assert finished.wait(10)

    def go(who: str) -> None:
        engine = TaskEngine(
            "t",
            [FnStage(n, body(who)) for n in "ab"],
            DemoState,
            store_as(backend, who, clock),
            clock=clock,
            sleep=sleep,
            wait_for_lease=60,
        )
        start.wait()
        results[who] = engine.run()
        finished.set()

    threads = [threading.Thread(target=go, args=(w,)) for w in ("x", "y")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert len(runs) == 2 and len({r.split(":")[0] for r in runs}) == 1
    assert all(r.status is StageStatus.COMPLETE for r in results.values())
    assert (
        sum(s.attempts for s in StateStore(backend, "pfx").load_task("t", DemoState).values()) == 2
    )
