"""Issue 17 on Lambda: plan -> Distributed Map over the shards -> join, as the state
machine runs it (``infra/statemachine/shard-fan-out.asl.json``, driven by
:mod:`tests.aws.asl`), with shard events answered by the real handler; the rig and its
simulated time are in :mod:`tests.aws.fanout_rig`.
"""

from __future__ import annotations

import json

import pytest

from eleanor_cloud.aws import lambda_handler
from eleanor_cloud.engine import Backoff
from eleanor_cloud.engine.fanout import list_done, load_plan, load_shard
from eleanor_cloud.errors import InvalidState
from eleanor_cloud.models import RetryPolicy, SimpleRecordsResult, StageStatus
from tests.aws.fanout_rig import BUCKET, MARGIN, SHARD_ARN, STAGE_ARN, Quick, Rig, Sharded
from tests.aws.sim import SimContext
from tests.aws.taskmod import TState


def test_plan_map_join_and_the_next_fan_out_through_the_state_machine() -> None:
    rig = Rig("fan-job", [])
    load = Sharded("load", rig.sim, shards=4, per=50)
    index = Sharded("index", rig.sim, shards=2, per=20)
    rig.stages.extend([Quick("prepare", rig.sim), load, index, Quick("publish", rig.sim)])

    execution = rig.execute()

    assert execution.status == "SUCCEEDED", execution
    assert execution.output["status"] == "COMPLETE" and execution.output["done"] is True
    # The task is invoked three times: it runs prepare and plans load; it joins load
    # and plans index; it joins index and runs publish. A map between each two.
    top = [v for v in execution.visited if v in ("RunTask", "RunShards", "TaskComplete")]
    assert top == ["RunTask", "RunShards", "RunTask", "RunShards", "RunTask", "TaskComplete"]
    task_calls = [e for f, e in rig.calls if f == STAGE_ARN]
    assert len(task_calls) == 3 and all("shard" not in e for e in task_calls)
    # Each map read the persisted plan from the store (the ItemReader), nothing else.
    assert execution.reads == [
        (BUCKET, "fan-job/load/plan.json"),
        (BUCKET, "fan-job/index/plan.json"),
    ]
    plans = {s: load_plan(rig.store, "fan-job", s) for s in ("load", "index")}
    first = rig.outputs[0]
    assert first["fan_out"] == {
        "stage": "load",
        "plan_id": plans["load"].plan_id,  # type: ignore[union-attr]
        "shards": 4,
        "plan_key": "fan-job/load/plan.json",
    }
    assert first["stages_run"] == ["prepare", "load"] and first["wait_seconds"] == 0
    # One child per shard, in plan order; a 50-record shard takes two invocations
    # (3 + 2 batches), a 20-record one a single invocation.
    load_map, index_map = execution.children[:4], execution.children[4:]
    assert len(execution.children) == 6
    assert all(c.status == "SUCCEEDED" and c.output == "COMPLETE" for c in execution.children)
    assert [c.invocations for c in load_map] == [2, 2, 2, 2]
    assert [c.invocations for c in index_map] == [1, 1]
    assert all(c.waits == [0] for c in load_map)  # suspended: continue at once
    calls = rig.shard_calls("load")
    assert list(calls) == ["load-0", "load-1", "load-2", "load-3"]
    plan_id = plans["load"].plan_id  # type: ignore[union-attr]
    for shard, events in calls.items():
        event = {"task_id": "fan-job", "stage": "load", "shard": shard, "plan_id": plan_id}
        carried = {**event, "lease_watch": None, "lease_waited_seconds": 0}
        assert events == [event, carried]
    shard_outputs = [o for o in rig.outputs if "shard" in o and o["stage"] == "load"]
    # batches: this invocation's; counts: the shard's so far (its checkpoint, then result).
    assert [(o["done"], o["batches"], o["counts"]["success"]) for o in shard_outputs[:2]] == [
        (False, 3, 30),
        (True, 2, 50),
    ]
    # Every record counted exactly once; each stage joined once, into the sum.
    assert sorted(item for _, item in load.offered) == list(range(200))
    assert sorted(item for _, item in index.offered) == list(range(40))
    for name, total, shards in (("load", 200, 4), ("index", 40, 2)):
        state = rig.store.load("fan-job", name, TState)
        assert state.status is StageStatus.COMPLETE and len(state.history) == 1
        assert state.result == SimpleRecordsResult(
            total_count=total, success_count=total, message=f"joined {shards} shards"
        )
    assert load.planned == 1 and index.planned == 1
    assert rig.store.load("fan-job", "publish", TState).status is StageStatus.COMPLETE


def test_a_shard_that_ends_in_error_is_done_and_the_join_fails_the_task() -> None:
    rig = Rig("fan-bad", [], max_attempts=2)
    load = Sharded("load", rig.sim, shards=3, per=20, failing=frozenset({25}))
    rig.stages.extend([load, Quick("publish", rig.sim)])

    execution = rig.execute()

    assert execution.status == "FAILED" and execution.error == "TaskError"
    # The shard's attempts are its own (a retry pass per attempt, then ERROR): its
    # child still succeeds, as the shard is done; the join fails the stage.
    assert [c.output for c in execution.children] == ["COMPLETE", "ERROR", "COMPLETE"]
    bad = load_shard(rig.store, "fan-bad", "load", "load-1")
    assert bad is not None and bad.value.status is StageStatus.ERROR and bad.value.attempts == 2
    assert [h.end_status for h in bad.value.history] == [StageStatus.RETRY, StageStatus.ERROR]
    state = rig.store.load("fan-bad", "load", TState)
    assert state.status is StageStatus.ERROR
    assert "1 of 3 shards ended ERROR: load-1" in state.history[-1].message
    assert "publish" not in rig.store.load_task("fan-bad", TState)


def test_a_shard_whose_single_batch_exceeds_the_budget_fails_the_map_not_loops() -> None:
    rig = Rig("fan-huge", [])
    huge = Sharded("load", rig.sim, shards=2, per=20)
    huge.expected_duration = 3.5  # a batch needs 3.5 * 1.2 + 0.5 = 4.7 s: never fits
    rig.stages.append(huge)

    execution = rig.execute()

    assert execution.status == "FAILED" and execution.error == "ShardsFailed"
    (child,) = execution.children  # the first failed child fails the map
    assert child.status == "FAILED" and child.error == "ShardRunnerFailed"
    assert child.errors == ["StageDoesNotFit"] and child.invocations == 1
    assert huge.offered == []


def test_the_loop_waits_on_shards_run_elsewhere_then_joins() -> None:
    # A plain task loop (no map): the task event plans, later ones find the shards
    # still running elsewhere (ECS, Batch): no progress, yet no StageDoesNotFit: the
    # response says to poll. Once the shards are done the next one joins.
    rig = Rig("fan-poll", [])
    load = Sharded("load", rig.sim, shards=2, per=10)
    rig.stages.extend([load, Quick("publish", rig.sim)])
    planned = rig.invoke(STAGE_ARN, {"task_id": "fan-poll"})
    assert planned["fan_out"]["shards"] == 2 and planned["wait_seconds"] == 0
    waiting = rig.invoke(STAGE_ARN, {"task_id": "fan-poll"})
    assert waiting["done"] is False and waiting["stages_run"] == []
    assert waiting["fan_out"] == planned["fan_out"] and waiting["wait_seconds"] == 30
    engine = rig.build({"task_id": "fan-poll"})
    for shard in ("load-0", "load-1"):
        assert engine.run_shard("load", shard).done  # a worker elsewhere
    assert sorted(list_done(rig.store, "fan-poll", "load")) == ["load-0", "load-1"]
    joined = rig.invoke(STAGE_ARN, {"task_id": "fan-poll"})
    assert joined["done"] is True and joined["fan_out"] is None
    assert joined["stages_run"] == ["publish"]


def test_a_join_followed_by_a_stage_that_does_not_fit_loops_rather_than_fails() -> None:
    # The join ends the fanned-out stage's attempt without starting anything; that is
    # progress: the next invocation has the whole budget for the next stage.
    rig = Rig("fan-then-long", [])
    long = Quick("long", rig.sim)
    long.expected_duration = 3.9
    rig.stages.extend([Sharded("load", rig.sim, shards=1, per=10), long])
    rig.invoke(STAGE_ARN, {"task_id": "fan-then-long"})
    rig.build({"task_id": "fan-then-long"}).run_shard("load", "load-0")
    out = rig.handler({"task_id": "fan-then-long"}, SimContext(rig.sim, 4.5))  # 3.5 s budget
    assert out["done"] is False and out["next_stage"] == "long" and out["wait_seconds"] == 0
    assert rig.store.load("fan-then-long", "load", TState).status is StageStatus.COMPLETE
    final = rig.invoke(STAGE_ARN, {"task_id": "fan-then-long"})
    assert final["done"] is True and final["stages_run"] == ["long"]


def test_per_shard_retries_and_counts_in_the_shard_response() -> None:
    # No backoff: all three attempts fit in one invocation (with one, a retry that
    # cannot fit waits for the next invocation, as for a stage).
    rig = Rig(
        "fan-retry",
        [],
        retry_policy=RetryPolicy.STAGE,
        max_attempts=3,
        backoff=Backoff(initial=0, jitter=0),
    )
    flaky = Sharded("load", rig.sim, shards=1, per=20, failing=frozenset({3}))
    rig.stages.append(flaky)
    plan_id = rig.invoke(STAGE_ARN, {"task_id": "fan-retry"})["fan_out"]["plan_id"]
    out = rig.invoke(
        SHARD_ARN, {"task_id": "fan-retry", "stage": "load", "shard": "load-0", "plan_id": plan_id}
    )
    # Attempt 1 offers 20 records (one fails); attempts 2 and 3 re-offer the failed one.
    assert out["done"] is True and out["status"] == "ERROR" and out["attempts"] == 3
    assert out["counts"] == {"total": 20, "success": 19, "fail": 1, "unprocessed": 0}
    # Why it ended ERROR: its last attempt's message (the shard's done marker keeps it).
    assert out["message"].startswith("RecordsFailed: 1 record(s) failed"), out
    assert json.loads(json.dumps(out)) == out  # plain JSON, as Lambda returns it


def test_the_fan_out_wait_is_configurable_and_checked() -> None:
    rig = Rig("fan-wait", [])
    rig.stages.append(Sharded("load", rig.sim, shards=2, per=10))
    handler = lambda_handler(
        rig.build, safety_margin=MARGIN, clock=rig.sim.clock, fan_out_wait_seconds=7
    )
    handler({"task_id": "fan-wait"}, SimContext(rig.sim, 5.0))  # plans
    assert handler({"task_id": "fan-wait"}, SimContext(rig.sim, 5.0))["wait_seconds"] == 7
    with pytest.raises(InvalidState, match="fan_out_wait_seconds must be >= 0"):
        lambda_handler(rig.build, fan_out_wait_seconds=-1)
