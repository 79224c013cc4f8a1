"""Fan-out of a records stage over shards, in one process: plan once, shards under their
own leases and checkpoints, the join exactly once, bad plans and bad shard calls
(issue 17)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import eleanor_cloud as ec
from eleanor_cloud.engine import Backoff, BaseStage, StageContext, TaskEngine
from eleanor_cloud.engine.fanout import NotPlanned, Shard, list_done, load_plan
from eleanor_cloud.errors import InvalidState, LeaseHeld
from eleanor_cloud.models import RecordStatus, SimpleRecordsResult, StageStatus
from eleanor_cloud.store import StateStore
from tests.engine.conftest import FakeClock

NO_WAIT = Backoff(initial=0, jitter=0)


class FState(ec.BaseStageState[SimpleRecordsResult]):
    pass


class Fan(BaseStage[FState]):
    """``shards`` shards of ``per`` records each; ``fail`` maps shard -> attempts to fail."""

    name = "fan"

    def __init__(
        self, shards: int = 4, per: int = 25, fail: dict[str, int] | None = None, plan: Any = None
    ) -> None:
        super().__init__()
        self.shards, self.per, self.fail = shards, per, dict(fail or {})
        self.planned = 0
        self._plan = plan
        self.offered: list[tuple[str, str]] = []

    def plan(self, state: FState, ctx: StageContext[FState]) -> Any:
        self.planned += 1
        if self._plan is not None:
            return self._plan
        return [
            Shard(f"p{i}", {"lo": i * self.per, "hi": (i + 1) * self.per})
            for i in range(self.shards)
        ]

    def run(self, state: FState, ctx: StageContext[FState]) -> None:
        shard = ctx.shard
        lo, hi = shard.spec["lo"], shard.spec["hi"]
        if self.fail.get(shard.id, 0) >= ctx.attempt:
            raise RuntimeError(f"{shard.id} attempt {ctx.attempt} fails")

        def read(cursor: Any, limit: int) -> ec.Page:
            start = lo if cursor is None else cursor
            end = min(start + limit, hi)
            return ec.Page(
                [{"id": str(i)} for i in range(start, end)],
                cursor=end if end < hi else None,
                total=hi - lo,
            )

        for batch in ctx.records(read, batch_size=7, checkpoint_every=0):
            for item in batch:
                self.offered.append((shard.id, item["id"]))
                batch.report(item, RecordStatus.SUCCESS)


class After(BaseStage[FState]):
    name = "after"

    def run(self, state: FState, ctx: StageContext[FState]) -> Any:
        return ctx.result_of("fan")


def engine(store: StateStore, fan: Fan, clock: FakeClock, **kw: Any) -> TaskEngine[FState]:
    return TaskEngine(
        "job", [fan, After()], FState, store, clock=clock, sleep=clock.sleep, backoff=NO_WAIT, **kw
    )


def test_plan_then_shards_then_one_join_then_the_next_stage(
    store: StateStore, clock: FakeClock
) -> None:
    fan = Fan()
    first = engine(store, fan, clock).run()
    assert not first.done and "fanned out" in (first.message or "")
    plan = load_plan(store, "job", "fan")
    assert plan is not None and [s.id for s in plan.shards] == ["p0", "p1", "p2", "p3"]
    for shard in plan.shards:
        summary = engine(store, fan, clock).run_shard("fan", shard.id)
        assert summary.done and summary.status is StageStatus.COMPLETE
    assert sorted(list_done(store, "job", "fan")) == ["p0", "p1", "p2", "p3"]
    final = engine(store, fan, clock).run()
    assert final.status is StageStatus.COMPLETE
    joined = SimpleRecordsResult(total_count=100, success_count=100, message="joined 4 shards")
    assert store.load("job", "fan", FState).result == joined
    assert store.load("job", "after", FState).result == joined
    assert fan.planned == 1 and len(fan.offered) == len(set(fan.offered)) == 100


def test_local_workers_run_the_shards_and_join(store: StateStore, clock: FakeClock) -> None:
    if store.backend.description.startswith("memory"):
        with pytest.raises(InvalidState, match="needs a store that processes share"):
            engine(store, Fan(shards=2), clock).run(workers=2)
        return
    summary = engine(store, Fan(shards=5), clock).run(workers=3)
    assert summary.status is StageStatus.COMPLETE
    assert store.load("job", "fan", FState).result.success_count == 125  # type: ignore[union-attr]


def test_retries_apply_per_shard_and_show_in_its_history(
    store: StateStore, clock: FakeClock
) -> None:
    fan = Fan(fail={"p1": 1})
    engine(store, fan, clock).run()
    for sid in ("p0", "p1", "p2", "p3"):
        engine(store, fan, clock, max_attempts=3).run_shard("fan", sid)
    from eleanor_cloud.engine.fanout import load_shard

    p1 = load_shard(store, "job", "fan", "p1")
    assert p1 is not None and p1.value.attempts == 2
    assert [h.end_status for h in p1.value.history] == [StageStatus.RETRY, StageStatus.COMPLETE]
    assert engine(store, fan, clock).run().status is StageStatus.COMPLETE


def test_a_shard_that_ends_error_fails_the_stage(store: StateStore, clock: FakeClock) -> None:
    fan = Fan(fail={"p2": 99})
    engine(store, fan, clock).run()
    for sid in ("p0", "p1", "p2", "p3"):
        engine(store, fan, clock, max_attempts=2).run_shard("fan", sid)
    summary = engine(store, fan, clock).run()
    assert summary.status is StageStatus.ERROR
    assert "1 of 4 shards ended ERROR: p2" in store.load("job", "fan", FState).history[-1].message


def test_two_joiners_race_and_one_joins(store: StateStore, clock: FakeClock) -> None:
    fan = Fan()
    engine(store, fan, clock).run()
    for sid in ("p0", "p1", "p2", "p3"):
        engine(store, fan, clock).run_shard("fan", sid)
    gate, outcomes = threading.Barrier(2), []

    def join() -> None:
        gate.wait()
        try:
            outcomes.append(engine(store, fan, clock).run().status)
        except LeaseHeld:
            outcomes.append("held")

    threads = [threading.Thread(target=join) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert StageStatus.COMPLETE in outcomes
    state = store.load("job", "fan", FState)
    assert state.status is StageStatus.COMPLETE and len(state.history) == 1  # joined once
    late = engine(store, fan, clock).run_shard("fan", "p3")  # a worker after the join
    assert late.done and late.status is StageStatus.COMPLETE


@pytest.mark.parametrize(
    ("plan", "match"),
    [
        ([], "returned no shards"),
        ([Shard("a"), Shard("a")], "shard id 'a' twice"),
        ([Shard("../x")], "bad shard id"),
        ("abc", "must return a list of Shard"),
        ([{"id": "a"}], "must return Shard objects"),
        ([Shard("a", "x" * 2000)], "spec over 1024 bytes"),
    ],
)
def test_bad_plans_are_refused_with_the_stage_named(
    store: StateStore, clock: FakeClock, plan: Any, match: str
) -> None:
    with pytest.raises(InvalidState, match=match):
        engine(store, Fan(plan=plan), clock).run()
    assert load_plan(store, "job", "fan") is None  # nothing was written


def test_bad_shard_calls(store: StateStore, clock: FakeClock) -> None:
    fan = Fan()
    with pytest.raises(NotPlanned, match="not planned"):
        engine(store, fan, clock).run_shard("fan", "p0")
    engine(store, fan, clock).run()
    with pytest.raises(InvalidState, match="has no shard 'p9'"):
        engine(store, fan, clock).run_shard("fan", "p9")
    with pytest.raises(InvalidState, match=r"another plan|stored plan is"):
        engine(store, fan, clock).run_shard("fan", "p0", plan_id="0" * 32)
    with pytest.raises(InvalidState, match="no stage 'nope'"):
        engine(store, fan, clock).run_shard("nope", "p0")


def test_planning_again_after_a_crash_cannot_change_the_plan(
    store: StateStore, clock: FakeClock
) -> None:
    engine(store, Fan(shards=3), clock).run()
    before = load_plan(store, "job", "fan")
    engine(store, Fan(shards=9), clock).run()  # another planner, another answer
    assert load_plan(store, "job", "fan") == before


def test_local_workers_over_s3_http(s3_bucket: str, moto_server_url: str) -> None:
    """Forked workers on an S3 store: each drops the parent's pooled connections."""
    store = ec.open_store(f"s3://{s3_bucket}/fan", endpoint_url=moto_server_url)
    summary = TaskEngine(
        "job", [Fan(shards=3, per=10), After()], FState, store, backoff=NO_WAIT
    ).run(workers=3)
    assert summary.status is StageStatus.COMPLETE, summary
    assert store.load("job", "fan", FState).result.success_count == 30  # type: ignore[union-attr]


def test_a_held_shard_names_the_shard_and_workers_hold_under_their_own_names(
    store: StateStore, clock: FakeClock
) -> None:
    from eleanor_cloud.clock import format_ts
    from eleanor_cloud.engine.fanout import load_shard
    from eleanor_cloud.keys import shard_lease_key
    from eleanor_cloud.store import Lease

    fan = Fan(shards=2)
    engine(store, fan, clock).run()
    now = clock()
    lease = Lease(
        task_id="job",
        holder="elsewhere",
        epoch=1,
        acquired_at=format_ts(now),
        expires_at=format_ts(now.replace(year=2100)),
        ttl_seconds=600.0,
    )
    store.write_lease(lease, replaces=None, key=shard_lease_key("pfx", "job", "fan", "p1"))
    with pytest.raises(LeaseHeld, match="shard 'p1' of stage 'fan' of task 'job'"):
        engine(store, fan, clock).run_shard("fan", "p1")
    engine(store, fan, clock).run_shard("fan", "p0", holder="worker-7")
    state = load_shard(store, "job", "fan", "p0")
    assert state is not None and state.writer  # written; the lease names the worker
    held = store.load_lease("job", key=shard_lease_key("pfx", "job", "fan", "p0"))
    assert held is not None and held.value.holder == "worker-7"


def test_a_stop_during_local_workers_says_so(store: StateStore, clock: FakeClock) -> None:
    if store.backend.description.startswith("memory"):
        return  # workers need a store processes share
    e = engine(store, Fan(shards=2), clock)
    e.run()
    e.request_stop("operator said stop")
    summary = e.run(workers=2)
    assert not summary.done and summary.message == "operator said stop"
