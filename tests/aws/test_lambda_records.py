"""Issue 16 on Lambda: a records stage longer than one invocation, driven by the loop.

A records stage's ``expected_duration`` is the expected duration of one batch; before
each batch the engine suspends (checkpoint, stage stays RUNNING) if less than
``max(slowest batch, expected) * 1.2 + 0.5`` s remain. The handler answers a
suspension that got through some batches with "not done, continue" (``wait_seconds``
0), and the next invocation resumes the same attempt at the cursor. ``StageDoesNotFit``
remains for a slice that got through no batch while nothing else progressed.

Time is simulated (:mod:`tests.aws.sim`): each batch works exactly 1 s on the clock the
engine, the handler and the context share, so which batch fits where is exact.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

import eleanor_cloud as ec
from eleanor_cloud.aws import StageDoesNotFit, lambda_handler
from eleanor_cloud.clock import format_ts
from eleanor_cloud.engine import BaseStage, EngineEvent, Page, StageContext, TaskEngine
from eleanor_cloud.engine.progress import Progress
from eleanor_cloud.models import SimpleRecordsResult, StageStatus
from tests.aws import asl
from tests.aws.sim import SimContext, SimTime
from tests.aws.taskmod import TState

TIMEOUT, MARGIN = 5.0, 1.0
BUDGET = TIMEOUT - MARGIN  # 4 s: batches start at 4, 3, 2 s left; at 1 s < 1.7 s it stops
BATCH_SECONDS = 1.0  # each batch's simulated work, and the stage's expected_duration
RECORDS, BATCH_SIZE = 100, 10  # 10 batches
FAILED = {7, 33, 34, 91}  # reported error
SKIPPED = {50, 99}  # reported unprocessed


class Numbers(BaseStage[TState]):
    """Records 0..count-1 from an offset cursor; each batch works ``work`` simulated s."""

    def __init__(
        self, name: str, sim: SimTime, *, count: int = RECORDS, expected: float = BATCH_SECONDS
    ) -> None:
        super().__init__(name, expected_duration=expected)
        self.sim, self.count = sim, count
        self.offered: list[int] = []
        self.keys: list[str] = []

    def read(self, cursor: Any, limit: int) -> Page:
        start = 0 if cursor is None else int(cursor)
        end = min(start + limit, self.count)
        return Page(
            list(range(start, end)), cursor=end if end < self.count else None, total=self.count
        )

    def run(self, state: TState, ctx: StageContext[TState]) -> None:
        for batch in ctx.records(self.read, batch_size=BATCH_SIZE, tolerate_failures=True):
            self.keys.append(batch.key)
            self.sim.sleep(BATCH_SECONDS)  # the batch's work
            for item in batch:
                self.offered.append(item)
                if item in FAILED:
                    batch.fail(item, "refused by the sink")
                elif item in SKIPPED:
                    batch.skip(item, "not for us")
                else:
                    batch.ok(item)


class Quick(BaseStage[TState]):
    """A plain stage that works ``work`` simulated seconds."""

    def __init__(self, name: str, sim: SimTime, *, work: float) -> None:
        super().__init__(name, expected_duration=work)
        self.sim, self.work = sim, work

    def run(self, state: TState, ctx: StageContext[TState]) -> None:
        self.sim.sleep(self.work)


class Rig:
    """One task on a memory store, its stages, the simulated clock and the handler."""

    def __init__(
        self, task_id: str, stages: list[BaseStage[TState]], sim: SimTime, **engine: Any
    ) -> None:
        self.task_id, self.stages, self.sim, self.engine = task_id, stages, sim, engine
        self.store = ec.open_store("memory://")
        self.events: list[list[EngineEvent]] = []  # per invocation
        self.outputs: list[dict[str, Any]] = []
        self.handler = lambda_handler(self.build, safety_margin=MARGIN, clock=sim.clock)

    def build(self, event: Any) -> TaskEngine[TState]:
        seen: list[EngineEvent] = []
        self.events.append(seen)
        return TaskEngine(
            event["task_id"],
            self.stages,
            TState,
            self.store,
            clock=self.sim.clock,
            sleep=self.sim.sleep,
            on_event=seen.append,
            **self.engine,
        )

    def invoke(self, _function: str, event: Any) -> dict[str, Any]:
        started = self.sim.now
        out = self.handler(event, SimContext(self.sim, TIMEOUT))
        assert self.sim.seconds_since(started) <= BUDGET, out  # never past the budget
        self.outputs.append(out)
        return out

    def kinds(self, index: int, stage: str) -> list[str]:
        return [e.kind for e in self.events[index] if e.stage_name == stage]

    def progress(self, stage: str) -> Progress:
        from eleanor_cloud.store import documents

        record = documents.load_progress(self.store, self.task_id, stage, Progress)
        assert record is not None
        return record.value


def test_a_ten_batch_stage_with_time_for_three_per_invocation_takes_four_invocations() -> None:
    sim = SimTime()
    stage = Numbers("load", sim)
    rig = Rig("records-loop", [stage], sim)

    execution = asl.run(
        asl.load("task-loop.asl.json"), {"task_id": "records-loop"}, rig.invoke, on_wait=sim.sleep
    )

    assert execution.status == "SUCCEEDED", execution
    assert execution.output["status"] == "COMPLETE" and execution.output["done"] is True
    assert execution.invocations == 4 and len(rig.outputs) == 4
    # Each suspension was "not done, continue at once"; the loop never waited.
    assert execution.waits == [0, 0, 0]
    for out in rig.outputs[:3]:
        assert out["done"] is False and out["status"] == "RUNNING"
        assert out["next_stage"] == "load" and out["wait_seconds"] == 0
        assert out["lease_held"] is False and out["stages_run"] == ["load"]
    assert rig.outputs[3]["stages_run"] == ["load"]
    # One attempt, started once and resumed three times; 3, 3, 3 and 1 batches.
    assert rig.kinds(0, "load")[0] == "stage_started"
    assert all(rig.kinds(i, "load")[0] == "stage_resumed" for i in (1, 2, 3))
    suspended = [
        [e.batches for e in invocation if e.kind == "stage_suspended"] for invocation in rig.events
    ]
    assert suspended == [[3], [3], [3], []]
    assert rig.kinds(3, "load")[-1] == "stage_completed"
    # Every record offered exactly once, in order; batch keys are the batch positions.
    assert stage.offered == list(range(RECORDS))
    assert stage.keys == [f"records-loop/load/{i}" for i in range(10)]
    # The result is the engine's count of what was checkpointed.
    state = rig.store.load("records-loop", "load", TState)
    assert state.status is StageStatus.COMPLETE and state.attempts == 1
    assert [h.end_status for h in state.history] == [StageStatus.COMPLETE]
    assert state.result == SimpleRecordsResult(
        total_count=RECORDS,
        success_count=RECORDS - len(FAILED) - len(SKIPPED),
        fail_count=len(FAILED),
        unprocessed_count=len(SKIPPED),
    )
    progress = rig.progress("load")
    assert progress.finished and not progress.suspended
    assert progress.batches == 10 and progress.offered == RECORDS
    (log,) = progress.attempts
    assert log.attempt == 1 and log.slices == 4 and log.batches == 10
    lease = rig.store.load_lease("records-loop")
    assert lease is not None and lease.value.released


def test_between_invocations_the_stage_is_running_and_suspended_at_a_batch_boundary() -> None:
    sim = SimTime()
    rig = Rig("between", [Numbers("load", sim)], sim)
    first = rig.invoke("x", {"task_id": "between"})
    assert first["done"] is False and first["wait_seconds"] == 0
    state = rig.store.load("between", "load", TState)
    assert state.status is StageStatus.RUNNING and state.attempts == 1
    progress = rig.progress("load")
    assert progress.suspended and progress.attempt == 1
    assert progress.batches == 3 and progress.cursor == 3 * BATCH_SIZE
    assert progress.success == 3 * BATCH_SIZE - 1  # record 7 failed


def test_a_records_stage_whose_single_batch_exceeds_the_budget_does_not_fit() -> None:
    # 3.5 s expected per batch fits the engine's start check (4 s left) but a batch
    # needs 3.5 * 1.2 + 0.5 = 4.7 s: the slice suspends before its first batch, and no
    # invocation has more time than this one. The state machine fails, not loops.
    sim = SimTime()
    stage = Numbers("huge", sim, expected=3.5)
    rig = Rig("too-big", [stage], sim)

    execution = asl.run(
        asl.load("task-loop.asl.json"), {"task_id": "too-big"}, rig.invoke, on_wait=sim.sleep
    )

    assert execution.status == "FAILED" and execution.error == "RunnerFailed"
    assert execution.errors == ["StageDoesNotFit"] and execution.retries == []
    assert execution.invocations == 1
    cause = execution.output["error"]["Cause"]
    assert "records stage 'huge'" in cause and "not even one batch" in cause
    assert "3.5s per batch" in cause and "a batch needs about 4.700s" in cause
    assert stage.offered == []
    # Nothing was lost: the attempt is suspended at its (empty) checkpoint, resumable
    # once the function has a longer timeout.
    assert rig.progress("huge").suspended
    lease = rig.store.load_lease("too-big")
    assert lease is not None and lease.value.released


def test_a_resumed_slice_that_gets_through_no_batch_does_not_fit_either() -> None:
    sim = SimTime()
    stage = Numbers("load", sim)
    rig = Rig("shrunk", [stage], sim)
    assert rig.invoke("x", {"task_id": "shrunk"})["done"] is False  # 3 batches
    # The function's timeout was lowered: 2.5 s - 1 s margin leave 1.5 s, enough to
    # resume (1 s expected) but not for a batch (1.7 s).
    with pytest.raises(StageDoesNotFit, match=r"'load': not even one batch \(expected 1\.0s"):
        rig.handler({"task_id": "shrunk"}, SimContext(sim, 2.5))
    assert rig.kinds(1, "load")[:3] == ["stage_resumed", "stage_checkpointed", "stage_suspended"]
    assert len(stage.offered) == 3 * BATCH_SIZE
    assert rig.progress("load").batches == 3


def test_a_slice_with_no_batch_after_another_stage_used_the_time_loops_on() -> None:
    # "first" spends 3 of the 4 s: "load" starts with 1 s left (its 1 s expected
    # duration fits the start check) and suspends before its first batch. Another
    # stage progressed, so that is no evidence a batch cannot fit: continue.
    sim = SimTime()
    stage = Numbers("load", sim, count=40)
    rig = Rig("after-first", [Quick("first", sim, work=3.0), stage], sim)

    execution = asl.run(
        asl.load("task-loop.asl.json"), {"task_id": "after-first"}, rig.invoke, on_wait=sim.sleep
    )

    assert execution.status == "SUCCEEDED", execution
    first = rig.outputs[0]
    assert first["stages_run"] == ["first", "load"] and first["wait_seconds"] == 0
    assert [e.batches for e in rig.events[0] if e.kind == "stage_suspended"] == [0]
    assert len(rig.outputs) == 3  # then 3 batches, then the last one
    assert stage.offered == list(range(40))
    state = rig.store.load("after-first", "load", TState)
    assert state.attempts == 1 and state.result is not None
    assert state.result.success_count == 40 - len(FAILED & set(range(40)))


def test_a_stage_whose_last_batch_is_the_last_that_fits_completes_in_that_invocation() -> None:
    sim = SimTime()
    stage = Numbers("load", sim, count=3 * BATCH_SIZE)  # exactly what one invocation fits
    rig = Rig("exact-fit", [stage], sim)
    # The source is exhausted after the third batch: the stage completes before the
    # deadline check that would otherwise suspend it (and cost one more invocation).
    out = rig.invoke("x", {"task_id": "exact-fit"})
    assert stage.offered == list(range(3 * BATCH_SIZE))
    assert out["done"] is True and out["status"] == "COMPLETE"
    assert [e.kind for e in rig.events[0] if e.kind == "stage_suspended"] == []


def test_a_slice_with_no_batch_after_taking_a_dead_lease_over_loops_on() -> None:
    # After a clean suspension, an invocation took the lease and was killed before it
    # did anything. The next one watches that lease (TTL 2 + skew 0.5 s) before it
    # takes it over, which leaves 1.5 s: too little for a batch (1.7 s). The lease took
    # the time, not the batch: continue, and the invocation after resumes at once.
    from eleanor_cloud.store import Lease

    sim = SimTime()
    stage = Numbers("load", sim, count=40)
    rig = Rig("dead-holder", [stage], sim, clock_skew_tolerance=0.5)
    assert rig.invoke("x", {"task_id": "dead-holder"})["done"] is False  # 3 batches
    current = rig.store.load_lease("dead-holder")
    assert current is not None and current.value.released
    killed = Lease(
        task_id="dead-holder",
        holder="killed-invocation",
        epoch=current.value.epoch + 1,
        acquired_at=format_ts(sim.now - timedelta(seconds=3.0)),
        expires_at=format_ts(sim.now - timedelta(seconds=1.0)),
        ttl_seconds=2.0,
    )
    rig.store.write_lease(killed, replaces=current)

    second = rig.invoke("x", {"task_id": "dead-holder"})
    assert second["done"] is False and second["wait_seconds"] == 0
    assert second["stages_run"] == ["load"]
    kinds = [e.kind for e in rig.events[1]]
    assert "lease_takeover" in kinds
    assert [e.batches for e in rig.events[1] if e.kind == "stage_suspended"] == [0]
    assert len(stage.offered) == 30
    third = rig.invoke("x", {"task_id": "dead-holder"})
    assert third["done"] is True and stage.offered == list(range(40))
    state = rig.store.load("dead-holder", "load", TState)
    assert state.status is StageStatus.COMPLETE and state.attempts == 1
