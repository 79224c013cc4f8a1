"""A sharded stage's step under the task's lease: plan it once, then join its shards.

Planning writes ``plan.json`` with Create (a plan already there wins) and marks the
stage RUNNING; the shards then run elsewhere (:mod:`.shard_run`). Joining happens in a
later run of the task that finds every shard's ``done/`` marker: the counts are summed
into the stage's result and the stage is marked COMPLETE by compare-and-swap under the
task's lease, so exactly one run joins, and a run that comes after finds it COMPLETE.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eleanor_cloud.engine import transitions as tr
from eleanor_cloud.engine.fanout import (
    NotPlanned,
    check_plan,
    joined_result,
    list_done,
    load_plan,
    read_done,
    write_plan,
)
from eleanor_cloud.engine.stage import BaseStage, StageContext
from eleanor_cloud.models import RetryPolicy, StageStatus

if TYPE_CHECKING:
    from eleanor_cloud.engine.checkpoint import Checkpointer, RunState

__all__ = ["is_sharded", "task_step"]


def is_sharded(stage: BaseStage[Any]) -> bool:
    return type(stage).plan is not BaseStage.plan


def task_step(cp: Checkpointer, run: RunState, stage: BaseStage[Any], name: str) -> str:
    """Advance a sharded stage under the task's lease: ``"complete"``, ``"error"`` or
    ``"waiting"`` (shards still running: the run ends, not done)."""
    spec, store = cp.spec, cp.store
    state = run.states[name]
    plan = load_plan(store, spec.task_id, name)
    if state.status in (StageStatus.CREATED, StageStatus.RETRY):
        if plan is None:
            ctx = StageContext(
                task_id=spec.task_id,
                stage_name=name,
                attempt=state.attempts + 1,
                logger=cp.reporter.log(name),
                stage_order=spec.stage_names,
                states=run.states,
                remaining_time=lambda: None,
                cancelled=lambda: run.lease.lost,
            )
            shards = stage.plan(state.model_copy(deep=True), ctx)
            plan = write_plan(store, check_plan(spec.task_id, name, shards), epoch=run.epoch)
        cp.commit(run, tr.start(state))
        cp.reporter.emit(
            "stage_started",
            name,
            state.attempts + 1,
            StageStatus.RUNNING,
            f"fanned out over {len(plan.shards)} shards (plan {plan.plan_id})",
        )
    if plan is None:
        raise NotPlanned(f"stage {name!r} of task {spec.task_id!r} is RUNNING but has no plan")
    ended = set(list_done(store, spec.task_id, name))
    wanted = [s.id for s in plan.shards]
    if not set(wanted) <= ended:
        return "waiting"
    done = [read_done(store, spec.task_id, name, sid) for sid in wanted]
    if any(d.status is not StageStatus.COMPLETE for d in done):
        terminal = [d for d in done if d.status is StageStatus.ERROR]
        if len(terminal) + sum(d.status is StageStatus.COMPLETE for d in done) < len(done):
            return "waiting"  # a redriven shard is running again
        running = run.states[name]
        failed = tr.entry(
            running.attempts,
            StageStatus.CREATED,
            tr_now(cp),
            StageStatus.ERROR,
            tr_now(cp),
            f"{len(terminal)} of {len(done)} shards ended ERROR: "
            + ", ".join(d.shard_id for d in terminal[:10]),
        )
        cp.commit(run, tr.fail(running, failed, RetryPolicy.NONE, 1, []))
        return "error"
    result = joined_result(done)
    running = run.states[name]
    try:
        joined: Any = spec.result_adapter.validate_python(result)
    except ValueError:
        joined = None  # the state's result type is the stage's own business
    entry = tr.entry(
        running.attempts,
        tr.status_before(running),
        tr_now(cp),
        StageStatus.COMPLETE,
        tr_now(cp),
        f"joined {len(done)} shards",
    )
    cp.commit(run, tr.complete(spec.state_class, running, running, joined, entry))
    cp.reporter.emit(
        "stage_completed",
        name,
        running.attempts,
        StageStatus.COMPLETE,
        f"joined {len(done)} shards",
    )
    return "complete"


def tr_now(cp: Checkpointer) -> Any:
    return cp.spec.clock()
