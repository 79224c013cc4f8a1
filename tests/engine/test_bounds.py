"""Stage objects stay small whatever the attempt count or message size (issue 15, item 5)."""

from __future__ import annotations

from typing import Any

from eleanor_cloud.engine import Backoff, TaskEngine
from eleanor_cloud.engine import transitions as tr
from eleanor_cloud.models import RetryPolicy, StageStatus
from eleanor_cloud.store import StateStore
from tests.engine.conftest import CountingBackend, FakeClock
from tests.engine.taskdefs import DemoState, FnStage, Out

NO_WAIT = Backoff(initial=0, jitter=0)


def stored_size(backend: CountingBackend, key: str) -> int:
    return len(backend.inner.read(key)[0])


def test_800_failed_attempts_keep_the_stage_object_bounded_and_the_budget_exact(
    backend: CountingBackend, clock: FakeClock
) -> None:
    def flaky(state: DemoState, ctx: Any) -> Out:
        raise RuntimeError(f"attempt {ctx.attempt} failed")

    store = StateStore(backend, "pfx", clock=clock)
    engine = TaskEngine(
        "t",
        [FnStage("a", flaky)],
        DemoState,
        store,
        clock=clock,
        sleep=clock.sleep,
        retry_policy=RetryPolicy.STAGE,
        max_attempts=800,
        backoff=NO_WAIT,
    )
    summary = engine.run()
    a = store.load("t", "a", DemoState)
    assert summary.status is StageStatus.ERROR
    assert a.attempts == 800, "the budget must be spent exactly, compaction or not"
    assert len(a.history) == tr.HISTORY_LIMIT
    assert a.history[1].message.startswith("compacted: attempts 2-")
    assert stored_size(backend, "pfx/t/a.json") < 20_000


def test_huge_failure_messages_are_capped(backend: CountingBackend, clock: FakeClock) -> None:
    def loud(state: DemoState, ctx: Any) -> Out:
        raise RuntimeError("x" * 256 * 1024)

    store = StateStore(backend, "pfx", clock=clock)
    TaskEngine(
        "t",
        [FnStage("a", loud)],
        DemoState,
        store,
        clock=clock,
        sleep=clock.sleep,
        max_attempts=20,
        backoff=NO_WAIT,
    ).run()
    a = store.load("t", "a", DemoState)
    assert a.attempts == 20 and all(len(h.message) <= tr.MESSAGE_LIMIT for h in a.history)
    # 20 attempts with 256 KiB messages made a 5.25 MB object before the cap
    assert stored_size(backend, "pfx/t/a.json") < 20 * (tr.MESSAGE_LIMIT + 400)
