"""Cancel (before and during a run), rollback order and state, saga, store-only ops."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from eleanor_cloud.engine import (
    AnyStageState,
    StageContext,
    TaskEngine,
    cancel_task,
    rollback_task,
    task_status,
)
from eleanor_cloud.errors import LeaseHeld, NotFound
from eleanor_cloud.models import RetryPolicy, StageStatus
from eleanor_cloud.store import StateStore
from tests.engine.conftest import CountingBackend, FakeClock
from tests.engine.taskdefs import DemoState, FnStage, Out


def ok(state: DemoState, ctx: Any) -> Out:
    state.counter += 1
    return Out(value=ctx.attempt, note=ctx.stage_name)


def other_store(store: StateStore) -> StateStore:
    return StateStore(store.backend, store.prefix, writer="operator")


def test_cancel_before_running_cancels_every_stage(store: StateStore, clock: FakeClock) -> None:
    stages = [FnStage(n, ok) for n in "abc"]
    engine = TaskEngine("t", stages, DemoState, store, clock=clock)
    engine.bind()
    summary = engine.cancel()
    assert summary.status is StageStatus.CANCELED and summary.done
    assert [s.status for s in summary.stages] == [StageStatus.CANCELED] * 3
    result = engine.run()
    assert result.status is StageStatus.CANCELED
    assert [s.calls for s in stages] == [0, 0, 0]


def test_cancel_leaves_completed_stages_alone(store: StateStore, clock: FakeClock) -> None:
    engine = TaskEngine(
        "t",
        [FnStage("a", ok), FnStage("b", lambda s, c: 1 / 0)],
        DemoState,
        store,
        clock=clock,
        retry_policy=RetryPolicy.NONE,
    )
    engine.run()
    summary = cancel_task(other_store(store), "t", DemoState)
    assert [s.status for s in summary.stages] == [StageStatus.COMPLETE, StageStatus.ERROR]


def test_cancel_during_a_stage_stops_the_holder_at_its_next_write(
    backend: CountingBackend, store: StateStore, clock: FakeClock
) -> None:
    def cancel_meanwhile(state: DemoState, ctx: Any) -> Out:
        thread = threading.Thread(target=cancel_task, args=(other_store(store), "t"))
        thread.start()
        thread.join(10)
        return Out(value=99)

    stages = [FnStage("a", ok), FnStage("b", cancel_meanwhile), FnStage("c", ok)]
    events: list[Any] = []
    summary = TaskEngine("t", stages, DemoState, store, clock=clock, on_event=events.append).run()
    assert summary.status is StageStatus.CANCELED and summary.done
    assert [s.calls for s in stages] == [1, 1, 0]
    b = store.load("t", "b", DemoState)
    assert b.status is StageStatus.CANCELED
    assert b.result is None  # the canceled attempt's outcome was discarded
    assert b.attempts == 1 == len(b.history)
    assert b.history[0].end_status is StageStatus.CANCELED
    assert b.history[0].message.startswith("canceled while running")
    assert store.load("t", "a", DemoState).status is StageStatus.COMPLETE
    assert store.load("t", "c", DemoState).status is StageStatus.CANCELED
    kinds = [(e.kind, e.stage_name) for e in events]
    # The stage's own event first (its outcome was discarded), then the task's.
    assert kinds.index(("stage_canceled", "b")) < kinds.index(("task_canceled", None))
    lease = store.load_lease("t")
    assert lease is not None and lease.value.released


def test_ctx_cancelled_sees_a_cancel_and_the_stage_can_stop_early(
    store: StateStore, clock: FakeClock
) -> None:
    seen: list[bool] = []

    def polite(state: DemoState, ctx: StageContext[DemoState]) -> Out:
        seen.append(ctx.cancelled)
        cancel_task(other_store(store), "t")
        seen.append(ctx.cancelled)
        raise RuntimeError("stopped early")

    summary = TaskEngine(
        "t", [FnStage("a", polite)], DemoState, store, clock=clock, cancel_check_interval=0
    ).run()
    assert seen == [False, True]
    assert summary.status is StageStatus.CANCELED
    a = store.load("t", "a", DemoState)
    assert a.attempts == 1 == len(a.history)
    assert "RuntimeError: stopped early" in a.history[0].message


def test_ctx_cancelled_reads_are_rate_limited_by_the_clock(
    backend: CountingBackend, store: StateStore, clock: FakeClock
) -> None:
    def poll(state: DemoState, ctx: StageContext[DemoState]) -> Out:
        backend.reset()
        for _ in range(50):
            assert not ctx.cancelled
        reads_before = backend.calls["read"]
        clock.advance(10)
        assert not ctx.cancelled
        assert backend.calls["read"] == reads_before + 1
        state.counter = reads_before
        return Out()

    TaskEngine(
        "t", [FnStage("a", poll)], DemoState, store, clock=clock, cancel_check_interval=10
    ).run()
    assert store.load("t", "a", DemoState).counter == 1


def test_rollback_runs_in_reverse_order_and_resets_to_created(
    store: StateStore, clock: FakeClock
) -> None:
    order: list[str] = []

    def undo(state: DemoState, ctx: StageContext[DemoState]) -> None:
        assert state.status is StageStatus.COMPLETE
        order.append(f"{ctx.stage_name}:{state.result.note if state.result else None}")

    stages = [FnStage(n, ok, rollback=undo) for n in "abcd"]
    engine = TaskEngine("t", stages, DemoState, store, clock=clock)
    engine.run()
    summary = engine.rollback("b")
    assert order == ["d:d", "c:c", "b:b"]
    assert [s.status for s in summary.stages] == [
        StageStatus.COMPLETE,
        StageStatus.CREATED,
        StageStatus.CREATED,
        StageStatus.CREATED,
    ]
    for name in "bcd":
        state = store.load("t", name, DemoState)
        assert state.result is None
        assert state.counter == 1  # user fields kept
        assert state.attempts == 1 == len(state.history)  # history kept
    assert store.load("t", "a", DemoState).result == Out(value=1, note="a")
    # running again re-runs b, c, d only, each with a fresh budget
    summary = engine.run()
    assert summary.status is StageStatus.COMPLETE
    assert [s.calls for s in stages] == [1, 2, 2, 2]
    d = store.load("t", "d", DemoState)
    assert d.attempts == 2 == len(d.history)
    assert [h.begin_status for h in d.history] == [StageStatus.CREATED, StageStatus.CREATED]


def test_rollback_resets_failed_stages_without_calling_their_rollback(
    store: StateStore, clock: FakeClock
) -> None:
    order: list[str] = []

    def undo(state: DemoState, ctx: StageContext[DemoState]) -> None:
        order.append(ctx.stage_name)

    stages = [FnStage("a", ok, rollback=undo), FnStage("b", lambda s, c: 1 / 0, rollback=undo)]
    engine = TaskEngine("t", stages, DemoState, store, clock=clock, retry_policy=RetryPolicy.NONE)
    assert engine.run().status is StageStatus.ERROR
    summary = engine.rollback("a")
    assert order == ["a"]
    assert summary.status is StageStatus.CREATED


def test_a_failing_rollback_stops_there(store: StateStore, clock: FakeClock) -> None:
    def boom(state: DemoState, ctx: Any) -> None:
        raise OSError("cannot undo")

    stages = [FnStage("a", ok), FnStage("b", ok, rollback=boom), FnStage("c", ok)]
    engine = TaskEngine("t", stages, DemoState, store, clock=clock)
    engine.run()
    with pytest.raises(OSError, match="cannot undo"):
        engine.rollback("a")
    statuses = {n: s.status for n, s in store.load_task("t", DemoState).items()}
    assert statuses == {
        "a": StageStatus.COMPLETE,
        "b": StageStatus.COMPLETE,
        "c": StageStatus.CREATED,
    }
    lease = store.load_lease("t")
    assert lease is not None and lease.value.released


def test_auto_rollback_compensates_completed_stages_when_the_task_fails(
    store: StateStore, clock: FakeClock
) -> None:
    order: list[str] = []

    def undo(state: DemoState, ctx: StageContext[DemoState]) -> None:
        order.append(ctx.stage_name)

    stages = [
        FnStage("a", ok, rollback=undo),
        FnStage("b", ok, rollback=undo),
        FnStage("c", lambda s, c: 1 / 0, rollback=undo),
        FnStage("d", ok, rollback=undo),
    ]
    summary = TaskEngine(
        "t",
        stages,
        DemoState,
        store,
        clock=clock,
        sleep=clock.sleep,
        auto_rollback=True,
        max_attempts=2,
    ).run()
    assert order == ["b", "a"]
    assert summary.status is StageStatus.ERROR
    assert [s.status for s in summary.stages] == [
        StageStatus.CREATED,
        StageStatus.CREATED,
        StageStatus.ERROR,
        StageStatus.CREATED,
    ]
    assert store.load("t", "a", DemoState).result is None


def test_rollback_is_refused_while_another_holder_runs(store: StateStore, clock: FakeClock) -> None:
    inside, release = threading.Event(), threading.Event()

    def hold(state: DemoState, ctx: Any) -> Out:
        inside.set()
        assert release.wait(10)
        return Out()

    engine = TaskEngine("t", [FnStage("a", ok), FnStage("b", hold)], DemoState, store, clock=clock)
    thread = threading.Thread(target=engine.run)
    thread.start()
    try:
        assert inside.wait(10)
        with pytest.raises(LeaseHeld):
            rollback_task(other_store(store), "t", "a", clock=clock)
    finally:
        release.set()
        thread.join(10)
    assert store.load("t", "a", DemoState).status is StageStatus.COMPLETE


def test_store_only_operations_preserve_user_fields(store: StateStore, clock: FakeClock) -> None:
    stages = [FnStage(n, ok) for n in "abc"]
    engine = TaskEngine("t", stages, DemoState, store, clock=clock)
    engine.run()
    ops = other_store(store)
    status = task_status(ops, "t")
    assert status.status is StageStatus.COMPLETE
    assert status.result == {"value": 1, "note": "c"}  # a plain dict via AnyStageState
    summary = rollback_task(ops, "t", "b", clock=clock)
    assert [s.status for s in summary.stages] == [
        StageStatus.COMPLETE,
        StageStatus.CREATED,
        StageStatus.CREATED,
    ]
    # the typed class still reads every state: the user field survived the round trip
    for name in "abc":
        assert store.load("t", name, DemoState).counter == 1
    loose = ops.load("t", "a", AnyStageState)
    assert loose.model_extra == {"counter": 1}
    assert loose.result == {"value": 1, "note": "a"}
    cancel_task(ops, "t")
    assert store.load("t", "b", DemoState).counter == 1
    assert store.load("t", "b", DemoState).status is StageStatus.CANCELED


def test_store_only_operations_on_a_missing_task_raise_not_found(store: StateStore) -> None:
    with pytest.raises(NotFound):
        task_status(store, "nope")
    with pytest.raises(NotFound):
        cancel_task(store, "nope")


def test_rollback_takes_a_dead_holders_lease_over_after_watching_it(
    store: StateStore, clock: FakeClock
) -> None:
    TaskEngine("t", [FnStage(n, ok) for n in "abc"], DemoState, store, clock=clock).run()
    ops = other_store(store)
    # A holder that died holding the lease: never released, never renewed again.
    released = ops.load_lease("t")
    assert released is not None
    ops.write_lease(
        released.value.model_copy(update={"released": False, "holder": "dead/1"}),
        replaces=released,
    )
    clock.advance(120)  # long past its expiry by this host's clock
    summary = rollback_task(ops, "t", "b", clock=clock, sleep=clock.sleep)
    assert [s.status for s in summary.stages] == [
        StageStatus.COMPLETE,
        StageStatus.CREATED,
        StageStatus.CREATED,
    ]
    # Not taken on the word of the dead holder's expires_at: watched for its TTL + 5s.
    assert sum(clock.sleeps) >= released.value.ttl_seconds + 5
    lease = ops.load_lease("t")
    assert lease is not None and lease.value.released
    assert lease.value.epoch == released.value.epoch + 1
