"""Budgets from history (unit level) and interrupted attempts under each policy."""

from __future__ import annotations

import pytest

from eleanor_cloud.engine import TaskEngine
from eleanor_cloud.engine.transitions import current_run, global_used, may_attempt
from eleanor_cloud.models import RetryPolicy, StageStateHistoryEntry, StageStatus
from eleanor_cloud.store import StateStore
from tests.engine.conftest import FakeClock
from tests.engine.taskdefs import DemoState, FnStage, Out
from tests.engine.test_lease import put_lease

S = StageStatus


def state(status: StageStatus, *ends: StageStatus) -> DemoState:
    history = [
        StageStateHistoryEntry(
            attempt=i + 1,
            begin_status=S.CREATED,
            begin_ts="x",
            end_status=e,
            end_ts="y",
            message="m",
            run_time_seconds=0.0,
        )
        for i, e in enumerate(ends)
    ]
    return DemoState(
        task_id="t", stage_name="a", status=status, attempts=len(ends), history=history
    )


@pytest.mark.parametrize(
    ("st", "expected"),
    [
        (state(S.CREATED), 0),
        (state(S.RETRY, S.RETRY, S.RETRY), 2),
        (state(S.COMPLETE, S.RETRY, S.COMPLETE), 2),  # the success counts too
        (state(S.ERROR, S.RETRY, S.ERROR), 2),
        (state(S.RETRY, S.RETRY, S.ERROR), 0),  # redriven: fresh run
        (state(S.RETRY, S.RETRY, S.ERROR, S.RETRY), 1),
        (state(S.CREATED, S.COMPLETE), 0),  # rolled back: fresh run
        (state(S.COMPLETE, S.RETRY, S.COMPLETE, S.RETRY, S.COMPLETE), 2),
    ],
)
def test_current_run_counts_attempts_since_the_last_reset(st: DemoState, expected: int) -> None:
    assert current_run(st) == expected


def test_may_attempt_per_policy() -> None:
    fresh, once = state(S.CREATED), state(S.RETRY, S.RETRY)
    done = state(S.COMPLETE, S.COMPLETE)
    assert may_attempt(RetryPolicy.NONE, 5, fresh, [fresh])
    assert not may_attempt(RetryPolicy.NONE, 5, once, [once])
    assert may_attempt(RetryPolicy.STAGE, 2, once, [once])
    assert not may_attempt(RetryPolicy.STAGE, 1, once, [once])
    assert global_used([done, once, fresh]) == 2
    assert may_attempt(RetryPolicy.GLOBAL, 3, fresh, [done, once, fresh])
    assert not may_attempt(RetryPolicy.GLOBAL, 2, fresh, [done, once, fresh])


def crashed_task(store: StateStore, clock: FakeClock, attempts_before: int) -> None:
    """A task whose holder died in stage a's attempt ``attempts_before + 1``."""
    TaskEngine("t", [FnStage("a", lambda s, c: Out())], DemoState, store, clock=clock).bind()
    ends = [S.RETRY] * attempts_before
    running = state(S.RUNNING, *ends).model_copy(update={"attempts": attempts_before + 1})
    store.create(running, epoch=1)
    put_lease(store, clock, holder="dead", expires_in=1)
    clock.advance(10)


@pytest.mark.parametrize(
    ("policy", "max_attempts", "before", "end", "calls"),
    [
        (RetryPolicy.STAGE, 3, 0, S.RETRY, 1),  # interrupted attempt 1 of 3: retried
        (RetryPolicy.STAGE, 3, 2, S.ERROR, 0),  # it was the last attempt: the task fails
        (RetryPolicy.NONE, 3, 0, S.ERROR, 0),  # NONE: an interruption is a failure
        (RetryPolicy.GLOBAL, 2, 0, S.RETRY, 1),
    ],
)
def test_an_interrupted_attempt_counts_against_the_budget(
    store: StateStore,
    clock: FakeClock,
    policy: RetryPolicy,
    max_attempts: int,
    before: int,
    end: StageStatus,
    calls: int,
) -> None:
    crashed_task(store, clock, before)
    stage = FnStage("a", lambda s, c: Out(value=c.attempt))
    summary = TaskEngine(
        "t",
        [stage],
        DemoState,
        store,
        clock=clock,
        sleep=clock.sleep,
        retry_policy=policy,
        max_attempts=max_attempts,
    ).run()
    assert stage.calls == calls
    a = store.load("t", "a", DemoState)
    interrupted = a.history[before]
    assert interrupted.end_status is end
    assert interrupted.message.startswith("interrupted:")
    assert interrupted.attempt == before + 1
    assert a.attempts == len(a.history)
    expected = S.COMPLETE if calls else S.ERROR
    assert summary.status is expected
    if calls:
        assert a.result == Out(value=before + 2)


def test_a_failed_acquire_leaves_no_thread_behind(store: StateStore, clock: FakeClock) -> None:
    import threading

    from eleanor_cloud.errors import LeaseHeld

    TaskEngine("t", [FnStage("a", lambda s, c: Out())], DemoState, store, clock=clock).bind()
    put_lease(store, clock, expires_in=600)
    before = threading.active_count()
    for _ in range(3):
        with pytest.raises(LeaseHeld):
            TaskEngine("t", [FnStage("a", lambda s, c: Out())], DemoState, store, clock=clock).run()
    assert threading.active_count() == before
