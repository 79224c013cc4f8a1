"""Retry policies with exact attempt counts and history; backoff; redrive."""

from __future__ import annotations

from typing import Any

import pytest

from eleanor_cloud.engine import Backoff, StageContext, TaskEngine, retry_failed_task
from eleanor_cloud.engine.transitions import current_run
from eleanor_cloud.models import RetryPolicy, StageStatus
from eleanor_cloud.store import StateStore
from tests.engine.conftest import FakeClock
from tests.engine.taskdefs import DemoState, FnStage, Out

NO_JITTER = Backoff(initial=1.0, multiplier=2.0, max_delay=60.0, jitter=0.0)


def failing(times: int) -> Any:
    """A stage body that fails its first ``times`` calls, then succeeds."""
    calls = {"n": 0}

    def run(state: DemoState, ctx: StageContext[DemoState]) -> Out:
        calls["n"] += 1
        if calls["n"] <= times:
            raise ValueError(f"failure {calls['n']}")
        return Out(value=calls["n"])

    return run


def ends(store: StateStore, name: str) -> list[StageStatus]:
    return [h.end_status for h in store.load("t", name, DemoState).history]


def engine(
    store: StateStore, clock: FakeClock, stages: list[FnStage], **kwargs: Any
) -> TaskEngine[DemoState]:
    kwargs.setdefault("backoff", NO_JITTER)
    return TaskEngine("t", stages, DemoState, store, clock=clock, sleep=clock.sleep, **kwargs)


def assert_invariant(store: StateStore) -> None:
    for name, state in store.load_task("t", DemoState).items():
        assert state.attempts == len(state.history), name


def test_stage_policy_gives_each_stage_its_own_budget(store: StateStore, clock: FakeClock) -> None:
    stages = [
        FnStage("a", failing(2)),
        FnStage("b", failing(1)),
        FnStage("c", failing(5)),
        FnStage("d", failing(0)),
    ]
    summary = engine(store, clock, stages, retry_policy=RetryPolicy.STAGE, max_attempts=3).run()
    assert [s.calls for s in stages] == [3, 2, 3, 0]
    assert ends(store, "a") == [StageStatus.RETRY, StageStatus.RETRY, StageStatus.COMPLETE]
    assert ends(store, "b") == [StageStatus.RETRY, StageStatus.COMPLETE]
    assert ends(store, "c") == [StageStatus.RETRY, StageStatus.RETRY, StageStatus.ERROR]
    c = store.load("t", "c", DemoState)
    assert c.status is StageStatus.ERROR
    assert [h.attempt for h in c.history] == [1, 2, 3]
    assert [h.begin_status for h in c.history] == [
        StageStatus.CREATED,
        StageStatus.RETRY,
        StageStatus.RETRY,
    ]
    assert [h.message for h in c.history] == [
        "ValueError: failure 1",
        "ValueError: failure 2",
        "ValueError: failure 3",
    ]
    assert summary.status is StageStatus.ERROR
    assert summary.done
    assert summary.stage("d").status is StageStatus.CREATED
    # backoff: a retries twice (1s, 2s), b once (1s), c twice (1s, 2s)
    assert clock.sleeps == [1.0, 2.0, 1.0, 1.0, 2.0]
    assert_invariant(store)


def test_none_policy_fails_the_task_at_the_first_failure(
    store: StateStore, clock: FakeClock
) -> None:
    stages = [FnStage("a", failing(0)), FnStage("b", failing(1)), FnStage("c", failing(0))]
    summary = engine(store, clock, stages, retry_policy=RetryPolicy.NONE, max_attempts=5).run()
    assert [s.calls for s in stages] == [1, 1, 0]
    assert ends(store, "b") == [StageStatus.ERROR]
    assert store.load("t", "b", DemoState).attempts == 1
    assert summary.status is StageStatus.ERROR
    assert clock.sleeps == []
    assert_invariant(store)


def test_global_policy_counts_every_execution_including_successes(
    store: StateStore, clock: FakeClock
) -> None:
    # a: 1 execution; b: fails twice then succeeds = 3; total 4 = the budget; c starves.
    stages = [FnStage("a", failing(0)), FnStage("b", failing(2)), FnStage("c", failing(0))]
    summary = engine(store, clock, stages, retry_policy=RetryPolicy.GLOBAL, max_attempts=4).run()
    assert [s.calls for s in stages] == [1, 3, 0]
    assert ends(store, "b") == [StageStatus.RETRY, StageStatus.RETRY, StageStatus.COMPLETE]
    c = store.load("t", "c", DemoState)
    assert (c.status, c.attempts, c.history) == (StageStatus.ERROR, 0, [])
    assert summary.status is StageStatus.ERROR
    total = sum(s.attempts for s in store.load_task("t", DemoState).values())
    assert total == 4
    assert_invariant(store)


def test_global_policy_failure_is_final_when_the_budget_is_spent(
    store: StateStore, clock: FakeClock
) -> None:
    stages = [FnStage("a", failing(0)), FnStage("b", failing(9)), FnStage("c", failing(0))]
    engine(store, clock, stages, retry_policy=RetryPolicy.GLOBAL, max_attempts=4).run()
    assert [s.calls for s in stages] == [1, 3, 0]
    assert ends(store, "b") == [StageStatus.RETRY, StageStatus.RETRY, StageStatus.ERROR]


def test_global_policy_with_enough_budget_completes(store: StateStore, clock: FakeClock) -> None:
    stages = [FnStage("a", failing(1)), FnStage("b", failing(0)), FnStage("c", failing(1))]
    summary = engine(store, clock, stages, retry_policy=RetryPolicy.GLOBAL, max_attempts=5).run()
    assert summary.status is StageStatus.COMPLETE
    assert [s.calls for s in stages] == [2, 1, 2]


def test_backoff_delays_grow_cap_and_jitter() -> None:
    backoff = Backoff(initial=2.0, multiplier=3.0, max_delay=10.0, jitter=1.0, random=lambda: 0.25)
    assert [backoff.delay(n) for n in (0, 1, 2, 3, 4)] == [0.0, 1.5, 4.5, 7.5, 7.5]
    half = Backoff(initial=4.0, jitter=0.5, random=lambda: 1.0)
    assert half.delay(1) == 2.0
    assert Backoff(initial=4.0, jitter=0.0, random=lambda: 1.0).delay(1) == 4.0


def test_jittered_backoff_is_slept_through_the_injected_sleep(
    store: StateStore, clock: FakeClock
) -> None:
    values = iter([0.0, 0.5, 1.0])
    backoff = Backoff(initial=10.0, multiplier=2.0, jitter=0.5, random=lambda: next(values))
    engine(store, clock, [FnStage("a", failing(3))], backoff=backoff, max_attempts=4).run()
    assert clock.sleeps == [10.0, 15.0, 20.0]


def test_the_budget_survives_a_new_engine(store: StateStore, clock: FakeClock) -> None:
    body = failing(10)
    first = engine(store, clock, [FnStage("a", body)], max_attempts=3)
    # the 1s backoff does not fit a 0.5s budget: the run pauses after one failure
    summary = first.run(time_budget=0.5)
    assert summary.status is StageStatus.RUNNING and not summary.done
    assert ends(store, "a") == [StageStatus.RETRY]
    second_stage = FnStage("a", body)
    summary = engine(store, clock, [second_stage], max_attempts=3).run()
    assert second_stage.calls == 2
    assert ends(store, "a") == [StageStatus.RETRY] * 2 + [StageStatus.ERROR]
    assert summary.status is StageStatus.ERROR


def test_redrive_gives_failed_stages_a_fresh_budget(store: StateStore, clock: FakeClock) -> None:
    stages = [FnStage("a", failing(0)), FnStage("b", failing(3)), FnStage("c", failing(0))]
    eng = engine(store, clock, stages, max_attempts=2)
    assert eng.run().status is StageStatus.ERROR
    # running again does nothing: the task ended in ERROR
    assert eng.run().status is StageStatus.ERROR
    assert stages[1].calls == 2
    redriven = eng.retry_failed()
    assert redriven.stage("b").status is StageStatus.RETRY
    assert not redriven.done
    b = store.load("t", "b", DemoState)
    assert current_run(b) == 0 and b.attempts == 2
    summary = eng.run()
    assert summary.status is StageStatus.COMPLETE
    assert stages[1].calls == 4  # two fresh attempts: the first fails, the second succeeds
    assert [s.calls for s in stages] == [1, 4, 1]
    assert ends(store, "b") == [
        StageStatus.RETRY,
        StageStatus.ERROR,
        StageStatus.RETRY,
        StageStatus.COMPLETE,
    ]
    assert_invariant(store)


def test_redrive_function_needs_only_the_store(store: StateStore, clock: FakeClock) -> None:
    engine(store, clock, [FnStage("a", failing(9))], max_attempts=1).run()
    summary = retry_failed_task(store, "t")
    assert summary.stage("a").status is StageStatus.RETRY
    assert store.load("t", "a", DemoState).status is StageStatus.RETRY


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (RetryPolicy.NONE, [StageStatus.ERROR]),
        (RetryPolicy.STAGE, [StageStatus.RETRY, StageStatus.COMPLETE]),
    ],
)
def test_policy_table(
    store: StateStore, clock: FakeClock, policy: RetryPolicy, expected: list[StageStatus]
) -> None:
    engine(store, clock, [FnStage("a", failing(1))], retry_policy=policy).run()
    assert ends(store, "a") == expected
