"""Shard events on Lambda that do not match the plan, and a shard another worker holds.

Bad shard events fail the invocation with an ``errorType`` naming the mistake; the
state machine routes them to ``BadShardEvent`` at once (never retried). A shard whose
lease a dead worker left behind is waited for and taken over by the child's loop.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from eleanor_cloud import keys
from eleanor_cloud.aws import InvalidEvent
from eleanor_cloud.aws.lambda_shard import StalePlan, UnknownShard, UnknownStage
from eleanor_cloud.clock import format_ts
from eleanor_cloud.engine.fanout import NotPlanned, load_plan, load_shard
from eleanor_cloud.errors import InvalidKey
from eleanor_cloud.models import StageStatus
from eleanor_cloud.store import Lease
from tests.aws.fanout_rig import SHARD_ARN, STAGE_ARN, Quick, Rig, Sharded
from tests.aws.sim import SimContext

TTL, SKEW = 60.0, 5.0


def _rig(task_id: str, **options: Any) -> tuple[Rig, Sharded]:
    rig = Rig(task_id, [], lease_ttl=TTL, clock_skew_tolerance=SKEW, **options)
    load = Sharded("load", rig.sim, shards=2, per=50)
    rig.stages.extend([load, Quick("publish", rig.sim)])
    return rig, load


def _shard_event(rig: Rig, **fields: Any) -> dict[str, Any]:
    return {"task_id": rig.task_id, **fields}


@pytest.mark.parametrize(
    ("fields", "error", "match"),
    [
        ({"stage": "nope", "shard": "load-0"}, UnknownStage, "has no stage 'nope'"),
        ({"stage": "publish", "shard": "load-0"}, NotPlanned, "is not fanned out"),
        ({"stage": "load", "shard": "load-9"}, UnknownShard, "has no shard 'load-9'"),
        ({"stage": "load", "shard": "load-0", "plan_id": "0" * 32}, StalePlan, "another plan"),
        ({"stage": "load", "shard": 7}, InvalidEvent, "string 'stage' and 'shard'"),
        ({"shard": "load-0"}, InvalidEvent, "string 'stage' and 'shard'"),
        ({"stage": "load", "shard": "load-0", "plan_id": 5}, InvalidEvent, "plan_id"),
        ({"stage": "load", "shard": "../x"}, InvalidKey, "shard_id"),
    ],
    ids=[
        "unknown-stage",
        "stage-not-fanned-out",
        "unknown-shard",
        "other-plan",
        "shard-not-a-string",
        "no-stage",
        "bad-plan-id",
        "unsafe-shard-id",
    ],
)
def test_a_shard_event_the_plan_does_not_match_is_a_clear_error(
    fields: dict[str, Any], error: type[Exception], match: str
) -> None:
    rig, load = _rig("bad-events")
    rig.invoke(STAGE_ARN, {"task_id": "bad-events"})  # planned
    with pytest.raises(error, match=match):
        rig.handler(_shard_event(rig, **fields), SimContext(rig.sim, 5.0))
    assert load.offered == []  # nothing ran
    for shard in ("load-0", "load-1"):
        assert load_shard(rig.store, "bad-events", "load", shard) is None


def test_a_shard_event_before_the_stage_is_planned_is_refused() -> None:
    rig, load = _rig("unplanned")
    with pytest.raises(NotPlanned, match="not planned: run the task"):
        rig.handler(_shard_event(rig, stage="load", shard="load-0"), SimContext(rig.sim, 5.0))
    assert load_plan(rig.store, "unplanned", "load") is None and load.offered == []


@pytest.mark.parametrize(
    ("fields", "error_type"),
    [
        ({"stage": "load", "shard": "load-9"}, "UnknownShard"),
        ({"stage": "load", "shard": "load-0", "plan_id": "f" * 32}, "StalePlan"),
        ({"stage": "publish", "shard": "load-0"}, "NotPlanned"),
        ({"stage": "nope", "shard": "load-0"}, "UnknownStage"),
    ],
    ids=["unknown-shard", "other-plan", "not-planned", "unknown-stage"],
)
def test_the_state_machine_fails_a_bad_shard_event_at_once(
    fields: dict[str, Any], error_type: str
) -> None:
    rig, _ = _rig("bad-loop")
    rig.invoke(STAGE_ARN, {"task_id": "bad-loop"})
    child = rig.run_shard_loop(fields)
    assert child.status == "FAILED" and child.error == "BadShardEvent"
    assert child.errors == [error_type] and child.retries == [] and child.invocations == 1


def test_a_dead_workers_shard_lease_is_waited_for_and_taken_over() -> None:
    # The first invocation carries its watch of the dead lease out (it cannot end in
    # time to be worth paying for); after the Wait the next credits it (same version)
    # and takes the shard over at once, then finishes it.
    rig, load = _rig("orphan-shard", timeout=100.0)
    plan_id = rig.invoke(STAGE_ARN, {"task_id": "orphan-shard"})["fan_out"]["plan_id"]
    key = keys.shard_lease_key(rig.store.prefix, "orphan-shard", "load", "load-0")
    rig.store.write_lease(
        Lease(
            task_id="orphan-shard",
            holder="killed-worker",
            epoch=1,
            acquired_at=format_ts(rig.sim.now - timedelta(seconds=10)),
            expires_at=format_ts(rig.sim.now + timedelta(seconds=50)),
            ttl_seconds=TTL,
        ),
        replaces=None,
        key=key,
    )

    child = rig.run_shard_loop({"stage": "load", "shard": "load-0", "plan_id": plan_id})

    assert child.status == "SUCCEEDED" and child.output == "COMPLETE", child
    *held, done = rig.outputs[1:]
    assert all(h["lease_held"] and not h["done"] for h in held)
    assert all(h["status"] == "CREATED" and h["attempts"] == 0 for h in held)
    # The rest of the watch: TTL + skew, none of it watched yet.
    assert [h["wait_seconds"] for h in held] == child.waits == [int(TTL + SKEW)]
    assert all(h["lease_watch"] is not None for h in held)
    assert done["done"] is True and done["lease_held"] is False and done["batches"] == 5
    lease = rig.store.load_lease("orphan-shard", key=key)
    assert lease is not None and lease.value.epoch == 2 and lease.value.released
    assert sorted(item for shard, item in load.offered if shard == "load-0") == list(range(50))


def test_a_dead_workers_shard_lease_is_taken_over_across_short_invocations() -> None:
    rig, _ = _rig("orphan-short")  # 4 s budgets, a 65 s watch needed
    plan_id = rig.invoke(STAGE_ARN, {"task_id": "orphan-short"})["fan_out"]["plan_id"]
    key = keys.shard_lease_key(rig.store.prefix, "orphan-short", "load", "load-0")
    rig.store.write_lease(
        Lease(
            task_id="orphan-short",
            holder="killed-worker",
            epoch=1,
            acquired_at=format_ts(rig.sim.now - timedelta(seconds=TTL)),
            expires_at=format_ts(rig.sim.now),
            ttl_seconds=TTL,
        ),
        replaces=None,
        key=key,
    )
    child = rig.run_shard_loop(
        {"stage": "load", "shard": "load-0", "plan_id": plan_id}, max_transitions=400
    )
    assert child.status == "SUCCEEDED"
    state = load_shard(rig.store, "orphan-short", "load", "load-0")
    assert state is not None and state.value.status is StageStatus.COMPLETE


def test_a_shard_event_goes_to_the_shard_function_and_a_task_event_to_the_stage_runner() -> None:
    rig, _ = _rig("routing")
    execution = rig.execute()
    assert execution.status == "SUCCEEDED"
    functions = {(f, "shard" in e) for f, e in rig.calls}
    assert functions == {(STAGE_ARN, False), (SHARD_ARN, True)}
