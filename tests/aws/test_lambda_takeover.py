"""Issue 15, item 4: taking a dead holder's lease over on Lambda, across invocations.

A lease counts as abandoned only after a challenger watched it stand still for its TTL
plus the skew tolerance (here 60 + 5 s), longer than any invocation's budget (10 s
remaining, 1 s margin). Before, each invocation watched from zero and was stopped at
its deadline, so the task was never resumed. Now the response carries the watch, the
state machine's Wait adds its wait, and the next invocation continues the watch.

Time is simulated: the engine, the handler and the Lambda context read one clock that
only the engine's lease polls and the state machine's Wait states advance, so every
duration asserted is exact and nothing sleeps.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import eleanor_cloud as ec
from eleanor_cloud.aws import InvalidEvent, lambda_handler
from eleanor_cloud.aws.lambda_loop import VERSION_MAX_CHARS, held_lease_wait
from eleanor_cloud.clock import format_ts
from eleanor_cloud.engine import BaseStage, EngineEvent, StageContext, TaskEngine
from eleanor_cloud.engine.lease_watch import LeaseWatch
from eleanor_cloud.models import StageStatus
from eleanor_cloud.store import Lease, StateStore
from tests.aws import asl
from tests.aws.sim import SimContext, SimTime
from tests.aws.taskmod import TState

TTL, SKEW = 60.0, 5.0
NEEDED = TTL + SKEW
TIMEOUT, MARGIN = 10.0, 1.0  # each invocation's remaining time at start, and margin
BUDGET = TIMEOUT - MARGIN
STAGES = ("s1", "s2", "s3")


class Quick(BaseStage[TState]):
    def run(self, state: TState, ctx: StageContext[TState]) -> None:
        state.note = f"{self.name} ran"


class Rig:
    """One task, its store, the simulated clock and the handler under test."""

    def __init__(self, task_id: str, *, max_lease_wait: int | None = None) -> None:
        self.task_id = task_id
        self.sim = SimTime()
        self.store: StateStore = ec.open_store("memory://")
        self.runs: list[str] = []
        self.takeover_at: datetime | None = None
        self.built_from: list[dict[str, Any]] = []
        extra = {} if max_lease_wait is None else {"max_lease_wait": max_lease_wait}
        self.handler = lambda_handler(
            self.build, safety_margin=MARGIN, clock=self.sim.clock, **extra
        )

    def build(self, event: Any) -> TaskEngine[TState]:
        self.built_from.append(dict(event))

        def seen(ev: EngineEvent) -> None:
            if ev.kind == "lease_takeover":
                self.takeover_at = self.sim.now
            elif ev.kind == "stage_started" and ev.stage_name is not None:
                self.runs.append(ev.stage_name)

        return TaskEngine(
            event["task_id"],
            [Quick(name, expected_duration=1.0) for name in STAGES],
            TState,
            self.store,
            lease_ttl=TTL,
            clock_skew_tolerance=SKEW,
            clock=self.sim.clock,
            sleep=self.sim.sleep,
            on_event=seen,
        )

    def leave_a_dead_lease(self, *, expires_in: float) -> str:
        """The lease of an invocation killed mid-stage: nobody renews or releases it.
        Returns its version."""
        self.build({"task_id": self.task_id}).bind()
        now = self.sim.now
        record = self.store.write_lease(
            Lease(
                task_id=self.task_id,
                holder="killed-invocation",
                epoch=1,
                acquired_at=format_ts(now - timedelta(seconds=TTL - expires_in)),
                expires_at=format_ts(now + timedelta(seconds=expires_in)),
                ttl_seconds=TTL,
            ),
            replaces=None,
        )
        return record.version.token

    def invoke(self, event: Any) -> dict[str, Any]:
        started = self.sim.now
        out = self.handler(event, SimContext(self.sim, TIMEOUT))
        # No invocation outlives its budget (remaining time - margin), watching included.
        assert self.sim.seconds_since(started) <= BUDGET, out
        assert out["invocation"]["elapsed_seconds"] <= BUDGET
        return out


@pytest.mark.parametrize(
    ("expires_in", "max_lease_wait", "invocations"),
    [
        # Killed a moment ago: the lease looks live, the first invocation returns at once
        # and the Wait covers the whole watch; the second takes over at its first read.
        (50.0, None, 2),
        # Killed long ago: the first invocation watches until its deadline, the Wait
        # covers the rest.
        (-30.0, None, 2),
        # Waits capped at 20 s: a watch that cannot end within an invocation is not
        # paid for (the invocation returns at once); the free Waits accumulate it
        # (20 + 20 + 20 + 5), and the fourth invocation takes over and runs every stage.
        (-30.0, 20, 4),
    ],
    ids=["lease-looks-live", "lease-looks-expired", "short-waits"],
)
def test_a_dead_holders_lease_longer_than_any_invocation_is_taken_over_by_the_loop(
    expires_in: float, max_lease_wait: int | None, invocations: int
) -> None:
    rig = Rig("orphan", max_lease_wait=max_lease_wait)
    dead_version = rig.leave_a_dead_lease(expires_in=expires_in)
    started = rig.sim.now
    outputs: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []

    def invoke(_function: str, event: Any) -> Any:
        events.append(event)
        outputs.append(rig.invoke(event))
        return outputs[-1]

    execution = asl.run(
        asl.load("task-loop.asl.json"), {"task_id": "orphan"}, invoke, on_wait=rig.sim.sleep
    )

    assert execution.status == "SUCCEEDED", execution
    assert execution.output["status"] == "COMPLETE"
    assert len(outputs) == invocations
    # Taken over only once the lease had stood still for TTL + skew, as this chain of
    # invocations and waits measured it (exactly, on the simulated clock).
    assert rig.takeover_at is not None
    assert (rig.takeover_at - started).total_seconds() >= NEEDED
    lease = rig.store.load_lease("orphan")
    assert lease is not None and lease.value.epoch == 2 and lease.value.released
    assert rig.runs == list(STAGES)  # each stage once, after the takeover
    states = rig.store.load_task("orphan", TState)
    assert all(states[n].status is StageStatus.COMPLETE for n in STAGES)
    # Every invocation but the last saw the dead lease, returned its watch and waited
    # for the rest of it; the next event carried both back, the watch growing.
    held, last = outputs[:-1], outputs[-1]
    assert all(o["lease_held"] and o["lease_watch"]["version"] == dead_version for o in held)
    watched = [o["lease_watch"]["seconds"] for o in held]
    assert watched == sorted(watched)
    for out, event in zip(held, events[1:], strict=True):
        assert event["lease_watch"] == out["lease_watch"]
        assert event["lease_waited_seconds"] == out["wait_seconds"] == execution.waits.pop(0)
        assert 1 <= out["wait_seconds"] <= (max_lease_wait or 300)
    assert last["lease_held"] is False and last["lease_watch"] is None
    # build_engine sees the caller's event, never the loop's keys.
    assert all(e == {"task_id": "orphan"} for e in rig.built_from)


def test_before_the_fix_a_watch_from_zero_never_reaches_the_ttl_in_one_invocation() -> None:
    # The same dead lease, but the watch is not carried (as before): every invocation
    # starts from zero, cannot finish a 65 s watch in 9 s, and the lease stays.
    rig = Rig("stuck")
    rig.leave_a_dead_lease(expires_in=-30.0)
    for _ in range(5):
        out = rig.invoke({"task_id": "stuck"})
        assert out["lease_held"] is True and out["lease_watch"]["seconds"] == 0.0
        rig.sim.sleep(out["wait_seconds"])
    lease = rig.store.load_lease("stuck")
    assert lease is not None and lease.value.holder == "killed-invocation"


def test_a_watch_does_not_count_once_the_lease_moved() -> None:
    # The holder was alive after all: it renewed while the state machine waited. The
    # carried watch names the old version, so it counts for nothing and nobody takes over.
    rig = Rig("alive")
    old_version = rig.leave_a_dead_lease(expires_in=-30.0)
    first = rig.invoke({"task_id": "alive"})
    assert first["lease_watch"]["version"] == old_version
    current = rig.store.load_lease("alive")
    assert current is not None
    renewed = current.value.model_copy(
        update={"expires_at": format_ts(rig.sim.now + timedelta(seconds=TTL)), "renewals": 1}
    )
    rig.store.write_lease(renewed, replaces=current)
    rig.sim.sleep(first["wait_seconds"])

    second = rig.invoke(
        {
            "task_id": "alive",
            "lease_watch": first["lease_watch"],
            "lease_waited_seconds": first["wait_seconds"],
        }
    )
    assert second["lease_held"] is True and rig.takeover_at is None
    assert second["lease_watch"]["version"] != old_version
    assert second["lease_watch"]["seconds"] == 0.0  # a live-looking lease: no watch yet
    assert second["wait_seconds"] == math.ceil(NEEDED)
    lease = rig.store.load_lease("alive")
    assert lease is not None and lease.value.holder == "killed-invocation"
    assert rig.runs == []


@pytest.mark.parametrize(
    ("loop_fields", "names"),
    [
        ({"lease_watch": "watched"}, "lease_watch must be null or"),
        ({"lease_watch": ["v", 3]}, "lease_watch must be null or"),
        ({"lease_watch": {"seconds": 3}}, "its version is None"),
        ({"lease_watch": {"version": "", "seconds": 3}}, "its version is ''"),
        ({"lease_watch": {"version": 7, "seconds": 3}}, "its version is 7"),
        ({"lease_watch": {"version": "v" * (VERSION_MAX_CHARS + 1), "seconds": 3}}, "version"),
        ({"lease_watch": {"version": "v"}}, "its seconds are None"),
        ({"lease_watch": {"version": "v", "seconds": -1}}, "its seconds are -1"),
        ({"lease_watch": {"version": "v", "seconds": "60"}}, "its seconds are '60'"),
        ({"lease_watch": {"version": "v", "seconds": True}}, "its seconds are True"),
        ({"lease_watch": {"version": "v", "seconds": math.inf}}, "its seconds are inf"),
        ({"lease_watch": {"version": "v", "seconds": math.nan}}, "its seconds are nan"),
        ({"lease_waited_seconds": -5}, "lease_waited_seconds must be null or"),
        ({"lease_waited_seconds": "10"}, "lease_waited_seconds must be null or"),
        ({"lease_waited_seconds": math.inf}, "lease_waited_seconds must be null or"),
    ],
)
def test_a_malformed_lease_watch_in_the_event_is_refused_with_a_clear_error(
    loop_fields: dict[str, Any], names: str
) -> None:
    handler = lambda_handler(lambda event: pytest.fail("must not build"), safety_margin=1.0)
    with pytest.raises(InvalidEvent, match=names) as raised:
        handler({"task_id": "t", **loop_fields}, SimContext(SimTime(), TIMEOUT))
    message = str(raised.value)
    assert "\n" not in message and len(message) < 600  # one readable line, no dump
    # InvalidEvent is the Lambda errorType; the state machine must not retry it.
    assert isinstance(raised.value, ec.InvalidState)
    definition = asl.load("task-loop.asl.json")
    retried = {e for r in definition["States"]["RunStages"]["Retry"] for e in r["ErrorEquals"]}
    assert "InvalidEvent" not in retried and "InvalidState" not in retried


def test_null_loop_fields_are_the_first_invocations_and_are_accepted() -> None:
    rig = Rig("fresh")
    out = rig.invoke({"task_id": "fresh", "lease_watch": None, "lease_waited_seconds": None})
    assert out["done"] is True and rig.built_from == [{"task_id": "fresh"}]


@given(
    seen=st.floats(min_value=0, max_value=1e6, allow_nan=False),
    needed=st.floats(min_value=0.001, max_value=1e6, allow_nan=False),
)
def test_the_reported_watch_never_claims_more_than_was_seen(seen: float, needed: float) -> None:
    watch = LeaseWatch("v1", seen)
    held = ec.LeaseHeld("held", watch=watch, needed_seconds=needed)
    wait, field = held_lease_wait(
        held, clock=lambda: datetime(2030, 1, 1, tzinfo=UTC), skew=SKEW, max_wait=10**9
    )
    assert field is not None and field["version"] == "v1"
    # Rounded down, so the next invocation is never credited with unseen time...
    assert field["seconds"] <= seen
    # ...and the wait rounded up, so watch + wait reaches what is needed (uncapped).
    assert wait >= 1 and field["seconds"] + wait >= needed
    capped, _ = held_lease_wait(
        held, clock=lambda: datetime(2030, 1, 1, tzinfo=UTC), skew=SKEW, max_wait=20
    )
    assert 1 <= capped <= 20


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_max_lease_wait_must_be_whole_seconds_the_wait_state_accepts(bad: Any) -> None:
    with pytest.raises(ec.InvalidState, match="max_lease_wait must be an int >= 1"):
        lambda_handler(lambda event: pytest.fail("must not build"), max_lease_wait=bad)
