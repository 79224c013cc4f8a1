"""Run and resume: checkpoints, history, results, request counts, events, time budget."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest

from eleanor_cloud.clock import format_ts, parse_ts
from eleanor_cloud.engine import EngineEvent, StageContext, TaskEngine
from eleanor_cloud.errors import InvalidState
from eleanor_cloud.models import RetryPolicy, StageStatus
from eleanor_cloud.store import StateStore
from tests.engine.conftest import CountingBackend, FakeClock
from tests.engine.taskdefs import DemoState, FnStage, Other, Out


def make_stages(n: int, clock: FakeClock | None = None) -> list[FnStage]:
    def body(i: int) -> Any:
        def run(state: DemoState, ctx: StageContext[DemoState]) -> Out:
            if clock is not None:
                clock.advance(1.5)
            return Out(value=i, note=ctx.stage_name)

        return run

    return [FnStage(f"s{i}", body(i)) for i in range(n)]


@pytest.mark.parametrize("n", [1, 3, 10])
def test_fresh_run_costs_2n_plus_3_requests_and_5_for_the_index(
    backend: CountingBackend, store: StateStore, clock: FakeClock, n: int
) -> None:
    engine = TaskEngine("t", make_stages(n), DemoState, store, clock=clock)
    summary = engine.run()
    assert summary.status is StageStatus.COMPLETE
    assert summary.done
    assert summary.next_stage is None
    # manifest create + lease create + (RUNNING, COMPLETE) per stage + lease release,
    # and the task index: mark CREATED at bind, then two moves (CREATED -> RUNNING at
    # the first stage's start, RUNNING -> COMPLETE at the last stage's end), a PUT and
    # a DELETE each; stages that change no task status cost the index nothing.
    assert backend.total == (2 * n + 3) + 5
    assert backend.calls == {"write": 2 * n + 3 + 3, "delete": 2}


def test_resume_of_a_completed_task_reads_one_list_and_n_gets(
    backend: CountingBackend, store: StateStore, clock: FakeClock
) -> None:
    n = 6
    TaskEngine("t", make_stages(n), DemoState, store, clock=clock).run()
    backend.reset()
    again = make_stages(n)
    summary = TaskEngine("t", again, DemoState, store, clock=clock).run()
    assert summary.status is StageStatus.COMPLETE
    assert all(s.calls == 0 for s in again)
    # A finished task is read, not leased: the manifest names the stages (no LIST).
    assert backend.calls["list"] == 0
    stage_gets = [
        k for op, k in backend.log if op == "read" and k.rsplit("/", 1)[-1].startswith("s")
    ]
    assert len(stage_gets) == n
    # manifest create refused + its read, then one GET per stage: no writes at all
    assert [k for op, k in backend.log if op == "write" and "_task" not in k] == []
    assert backend.total == n + 2


def test_history_and_states_after_a_clean_run(store: StateStore, clock: FakeClock) -> None:
    start = clock()
    engine = TaskEngine("t", make_stages(3, clock), DemoState, store, clock=clock)
    summary = engine.run()
    for i, name in enumerate(["s0", "s1", "s2"]):
        record = store.load_record("t", name, DemoState)
        state = record.value
        assert state.status is StageStatus.COMPLETE
        assert state.attempts == 1 == len(state.history)
        assert state.result == Out(value=i, note=name)
        entry = state.history[0]
        assert entry.attempt == 1
        assert entry.begin_status is StageStatus.CREATED
        assert entry.end_status is StageStatus.COMPLETE
        assert entry.message == "completed"
        assert entry.run_time_seconds == pytest.approx(1.5)
        assert entry.begin_ts.endswith("Z") and entry.end_ts.endswith("Z")
        assert parse_ts(entry.end_ts) - parse_ts(entry.begin_ts) == timedelta(seconds=1.5)
        assert parse_ts(entry.begin_ts) == start + timedelta(seconds=1.5 * i)
        assert record.epoch == 1
        assert record.revision == 2  # RUNNING then COMPLETE
    assert summary.result == Out(value=2, note="s2")
    assert summary.stage("s1").last_run_seconds == pytest.approx(1.5)
    as_dict = summary.to_dict()
    assert as_dict["status"] == "COMPLETE"
    assert as_dict["result"] == {"value": 2, "note": "s2"}
    assert as_dict["stages"][0]["status"] == "COMPLETE"
    import json

    json.dumps(as_dict)


def test_running_is_persisted_before_the_stage_runs(store: StateStore) -> None:
    seen: list[tuple[StageStatus, int]] = []

    def look(state: DemoState, ctx: StageContext[DemoState]) -> Out:
        stored = StateStore(store.backend, store.prefix).load("t", "a", DemoState)
        seen.append((stored.status, stored.attempts))
        return Out()

    TaskEngine("t", [FnStage("a", look)], DemoState, store).run()
    assert seen == [(StageStatus.RUNNING, 1)]


def test_fields_set_on_state_are_saved_and_none_keeps_the_result(store: StateStore) -> None:
    def set_fields(state: DemoState, ctx: StageContext[DemoState]) -> None:
        state.counter = 41
        state.result = Out(value=7)

    def read_earlier(state: DemoState, ctx: StageContext[DemoState]) -> Out:
        earlier = ctx.state_of("a")
        earlier.counter = -1  # a copy: must not leak into the stored state
        result = ctx.result_of("a")
        assert isinstance(result, Out)
        return Out(value=ctx.state_of("a").counter + result.value)

    summary = TaskEngine(
        "t", [FnStage("a", set_fields), FnStage("b", read_earlier)], DemoState, store
    ).run()
    assert store.load("t", "a", DemoState).counter == 41
    assert store.load("t", "a", DemoState).result == Out(value=7)
    assert summary.result == Out(value=48)


def test_engine_fields_changed_by_a_stage_are_ignored(store: StateStore) -> None:
    def meddle(state: DemoState, ctx: StageContext[DemoState]) -> Out:
        state.status = StageStatus.CANCELED
        state.attempts = 99
        state.history = []
        state.stage_name = "elsewhere"
        return Out()

    TaskEngine("t", [FnStage("a", meddle)], DemoState, store).run()
    state = store.load("t", "a", DemoState)
    assert (state.status, state.attempts, len(state.history)) == (StageStatus.COMPLETE, 1, 1)


def test_state_of_refuses_current_later_and_unknown_stages(store: StateStore) -> None:
    errors: list[str] = []

    def probe(state: DemoState, ctx: StageContext[DemoState]) -> Out:
        for name in ("b", "c", "nope"):
            try:
                ctx.state_of(name)
            except InvalidState as exc:
                errors.append(str(exc))
        return Out()

    stages = [FnStage("a", lambda s, c: Out()), FnStage("b", probe), FnStage("c", probe)]
    TaskEngine("t", stages, DemoState, store).run()
    # stage b: b, c and nope refused; stage c: b is earlier (allowed), c and nope refused
    assert len(errors) == 5
    assert "'b' is not before it" in errors[0]
    assert "'c' is not before it" in errors[1]
    assert "no stage 'nope'" in errors[2]
    assert errors[3] == "stage 'c' may only read earlier stages; 'c' is not before it"


def test_wrong_result_type_is_a_failed_attempt_with_a_clear_message(store: StateStore) -> None:
    engine = TaskEngine(
        "t", [FnStage("a", lambda s, c: Other())], DemoState, store, retry_policy=RetryPolicy.NONE
    )
    summary = engine.run()
    assert summary.status is StageStatus.ERROR
    state = store.load("t", "a", DemoState)
    assert state.result is None
    message = state.history[0].message
    assert message.startswith("InvalidState: stage 'a' returned Other")
    assert "Out" in message


def test_invalid_state_left_by_a_stage_fails_the_attempt_and_is_discarded(
    store: StateStore,
) -> None:
    def corrupt(state: DemoState, ctx: StageContext[DemoState]) -> Out:
        state.counter = "not a number"  # type: ignore[assignment]
        return Out()

    summary = TaskEngine(
        "t", [FnStage("a", corrupt)], DemoState, store, retry_policy=RetryPolicy.NONE
    ).run()
    assert summary.status is StageStatus.ERROR
    state = store.load("t", "a", DemoState)
    assert state.counter == 0
    assert "left its state invalid" in state.history[0].message
    assert "counter" in state.history[0].message


def test_a_failed_attempt_discards_the_stages_changes(store: StateStore, clock: FakeClock) -> None:
    calls: list[int] = []

    def flaky(state: DemoState, ctx: StageContext[DemoState]) -> Out:
        calls.append(state.counter)
        state.counter += 10
        if len(calls) == 1:
            raise ValueError("boom")
        return Out()

    TaskEngine("t", [FnStage("a", flaky)], DemoState, store, clock=clock, sleep=clock.sleep).run()
    assert calls == [0, 0]
    assert store.load("t", "a", DemoState).counter == 10


def test_events_and_log_records_name_task_and_stage(
    store: StateStore, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[EngineEvent] = []
    attempts = {"n": 0}

    def once_flaky(state: DemoState, ctx: StageContext[DemoState]) -> Out:
        attempts["n"] += 1
        ctx.logger.info("inside the stage")
        if attempts["n"] == 1:
            raise RuntimeError("first time fails")
        return Out()

    caplog.set_level(logging.DEBUG, logger="eleanor_cloud.engine")
    TaskEngine(
        "t",
        [FnStage("a", once_flaky)],
        DemoState,
        store,
        clock=clock,
        sleep=clock.sleep,
        on_event=events.append,
    ).run()
    kinds = [(e.kind, e.stage_name, e.attempt) for e in events]
    assert kinds == [
        ("lease_acquired", None, 0),
        ("task_started", None, 0),
        ("stage_started", "a", 1),
        ("stage_retry", "a", 1),
        ("stage_started", "a", 2),
        ("stage_completed", "a", 2),
        ("task_completed", None, 0),
    ]
    retry = events[3]
    assert retry.status is StageStatus.RETRY
    assert retry.message == "RuntimeError: first time fails"
    with pytest.raises(AttributeError):
        retry.kind = "x"  # type: ignore[misc]
    records = [r for r in caplog.records if r.name == "eleanor_cloud.engine"]
    assert records
    assert all(getattr(r, "task_id", None) == "t" for r in records)
    inside = [r for r in records if r.getMessage() == "inside the stage"]
    assert [(r.stage_name, r.attempt) for r in inside] == [("a", 1), ("a", 2)]  # type: ignore[attr-defined]
    started = [r for r in records if "attempt 1 started" in r.getMessage()]
    assert started and started[0].stage_name == "a"  # type: ignore[attr-defined]


def test_a_failing_event_handler_does_not_break_the_task(store: StateStore) -> None:
    def bad_handler(event: EngineEvent) -> None:
        raise RuntimeError("observer bug")

    summary = TaskEngine("t", make_stages(2), DemoState, store, on_event=bad_handler).run()
    assert summary.status is StageStatus.COMPLETE


def test_time_budget_starts_no_stage_that_cannot_finish(
    backend: CountingBackend, store: StateStore, clock: FakeClock
) -> None:
    stages = make_stages(4, clock)  # each advances the clock by 1.5s
    for stage in stages:
        stage.expected_duration = 2.0
    events: list[EngineEvent] = []
    engine = TaskEngine("t", stages, DemoState, store, clock=clock, on_event=events.append)
    summary = engine.run(time_budget=4.0)
    # s0 at t=0 (4s left), s1 at t=1.5 (2.5s left), s2 at t=3 (1s left < 2s): paused
    assert [s.calls for s in stages] == [1, 1, 0, 0]
    assert summary.status is StageStatus.RUNNING
    assert not summary.done
    assert summary.next_stage == "s2"
    assert "deadline" in summary.message
    assert events[-1].kind == "task_paused"
    lease = store.load_lease("t")
    assert lease is not None and lease.value.released
    # resume later with a deadline far enough away
    summary = engine.run(deadline=clock() + timedelta(hours=1))
    assert summary.status is StageStatus.COMPLETE
    assert [s.calls for s in stages] == [1, 1, 1, 1]


def test_remaining_time_is_visible_to_the_stage(store: StateStore, clock: FakeClock) -> None:
    seen: list[float | None] = []

    def look(state: DemoState, ctx: StageContext[DemoState]) -> Out:
        seen.append(ctx.remaining_time())
        clock.advance(3)
        seen.append(ctx.remaining_time())
        return Out()

    TaskEngine("t", [FnStage("a", look)], DemoState, store, clock=clock).run(
        deadline=clock() + timedelta(seconds=10), time_budget=20
    )
    TaskEngine("u", [FnStage("a", look)], DemoState, store, clock=clock).run()
    assert seen == [10.0, 7.0, None, None]


def test_timestamps_are_utc_iso8601(store: StateStore, clock: FakeClock) -> None:
    TaskEngine("t", make_stages(1), DemoState, store, clock=clock).run()
    entry = store.load("t", "s0", DemoState).history[0]
    assert entry.begin_ts == format_ts(clock()) == "2026-01-01T00:00:00.000000Z"


def test_a_state_that_cannot_be_stored_fails_the_attempt_not_the_run(store: StateStore) -> None:
    from pydantic import BaseModel, ConfigDict

    from eleanor_cloud.models import BaseStageState

    class Loose(BaseModel):
        model_config = ConfigDict(arbitrary_types_allowed=True)
        thing: Any = None

    class LooseState(BaseStageState[Loose]):
        pass

    class Weird(FnStage):  # returns an object JSON cannot hold
        pass

    stage = Weird("a", lambda s, c: Loose(thing=object()))
    summary = TaskEngine(
        "t",
        [stage],
        LooseState,
        store,  # type: ignore[list-item]
        retry_policy=RetryPolicy.NONE,
    ).run()
    assert summary.status is StageStatus.ERROR
    message = store.load("t", "a", LooseState).history[0].message
    assert "not JSON-serializable" in message


def test_on_event_can_be_replaced_after_construction(store: StateStore) -> None:
    first: list[str] = []
    second: list[str] = []
    engine = TaskEngine(
        "t", make_stages(1), DemoState, store, on_event=lambda e: first.append(e.kind)
    )
    assert engine.on_event is not None
    engine.on_event = lambda e: second.append(e.kind)
    engine.run()
    assert first == [] and "task_completed" in second
    with pytest.raises(InvalidState, match="callable"):
        engine.on_event = 3  # type: ignore[assignment]


def test_status_is_read_only_and_matches_the_run(
    backend: CountingBackend, store: StateStore, clock: FakeClock
) -> None:
    engine = TaskEngine("t", make_stages(3), DemoState, store, clock=clock)
    summary = engine.run()
    backend.reset()
    again = engine.status()
    assert backend.calls["write"] == 0
    assert backend.calls["list"] == 1
    assert again.to_dict() == summary.to_dict()
