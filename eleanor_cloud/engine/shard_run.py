"""Running a sharded stage: the task's step (plan, then join) and one shard's run.

The task's step runs under the task's lease, inside the normal run loop. One shard's
run takes only that shard's lease: K workers run K shards at once, none runs a shard
another holds, and a crashed worker's shard is taken over (after a TTL of watching) and
fenced like a task, then resumed from its records checkpoint. Status changes come from
:mod:`.transitions`, as everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eleanor_cloud import keys
from eleanor_cloud.clock import format_ts
from eleanor_cloud.engine import transitions as tr
from eleanor_cloud.engine.fanout import (
    Done,
    NotPlanned,
    ShardState,
    load_plan,
    load_shard,
    mark_done,
    save_shard,
)
from eleanor_cloud.engine.lease import LeaseManager
from eleanor_cloud.engine.progress import Progress
from eleanor_cloud.engine.records import RecordsEnv, RecordsFailed, RecordsRun, Suspended
from eleanor_cloud.engine.stage import BaseStage, StageContext
from eleanor_cloud.errors import InvalidState, LeaseLost
from eleanor_cloud.models import StageStatus
from eleanor_cloud.store import documents

if TYPE_CHECKING:
    from eleanor_cloud.engine.attempt import AttemptControl
    from eleanor_cloud.engine.checkpoint import Checkpointer
    from eleanor_cloud.engine.fanout import Plan

__all__ = ["ShardSummary", "run_shard"]

_TERMINAL = (StageStatus.COMPLETE, StageStatus.ERROR)


@dataclass(frozen=True)
class ShardSummary:
    """What one shard's run ended with (``done``: it will not run again)."""

    task_id: str
    stage_name: str
    shard_id: str
    status: StageStatus
    attempts: int
    done: bool
    result: Any = None
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        result = self.result.model_dump(mode="json") if self.result is not None else None
        return {
            "task_id": self.task_id,
            "stage_name": self.stage_name,
            "shard_id": self.shard_id,
            "status": self.status.value,
            "attempts": self.attempts,
            "done": self.done,
            "result": result,
            "message": self.message,
        }


# -- one shard ------------------------------------------------------------------------


def run_shard(
    cp: Checkpointer,
    control: AttemptControl,
    stage: BaseStage[Any],
    name: str,
    shard_id: str,
    *,
    end: Any = None,
    plan_id: str | None = None,
    holder: str | None = None,
    lease_watch: Any = None,
) -> ShardSummary:
    """Run one shard to an end (COMPLETE/ERROR), a suspension or a lost lease."""
    spec, store = cp.spec, cp.store
    task_id = spec.task_id
    plan = load_plan(store, task_id, name)
    if plan is None:
        raise NotPlanned(
            f"stage {name!r} of task {task_id!r} is not planned: run the task first, then "
            "its shards"
        )
    if plan_id is not None and plan_id != plan.plan_id:
        raise InvalidState(
            f"stage {name!r} of task {task_id!r}: this worker is for plan {plan_id}, the "
            f"stored plan is {plan.plan_id}"
        )
    planned = plan.shard(shard_id)
    options = spec.lease
    lease = LeaseManager(
        store,
        task_id,
        holder=holder or spec.holder,
        ttl=options.ttl,
        clock=spec.clock,
        sleep=spec.sleep,
        clock_skew_tolerance=options.clock_skew_tolerance,
        wait=options.wait,
        renew_interval=options.renew_interval,
        key=keys.shard_lease_key(store.prefix, task_id, name, shard_id),
        label=f"shard {shard_id!r} of stage {name!r} of task {task_id!r}",
        prior_watch=lease_watch,
    )
    left = None if end is None else (end - spec.clock()).total_seconds()
    lease.acquire(time_left=left)
    control.shard_lease = lease  # for interrupt(): a container's grace ran out
    try:
        lease.start_renewing()
        return _advance(cp, control, stage, name, plan, planned.id, planned.spec, lease, end)
    finally:
        control.shard_lease = None
        lease.release()


def _advance(
    cp: Checkpointer,
    control: AttemptControl,
    stage: BaseStage[Any],
    name: str,
    plan: Plan,
    shard_id: str,
    shard_spec: Any,
    lease: LeaseManager,
    end: Any,
) -> ShardSummary:
    spec, store, task_id = cp.spec, cp.store, cp.spec.task_id
    record = load_shard(store, task_id, name, shard_id)
    progress = documents.load_progress(store, task_id, name, Progress, shard=shard_id)
    if lease.takeover:  # fence: every record a fenced-out worker kept is stale now
        if record is not None:
            record = save_shard(store, record.value, replaces=record, epoch=lease.epoch)
        if progress is not None:
            progress = documents.save_progress(
                store,
                progress.value,
                task_id=task_id,
                stage_name=name,
                shard=shard_id,
                replaces=progress,
                epoch=lease.epoch,
            )
    state = (
        record.value
        if record
        else ShardState(
            task_id=task_id, stage_name=name, shard_id=shard_id, status=StageStatus.CREATED
        )
    )
    stage_states = store.load_task(task_id, spec.state_class)
    while True:
        if state.status in _TERMINAL:
            done = Done(
                shard_id=shard_id,
                status=state.status,
                attempts=state.attempts,
                result=state.result,
                message=state.history[-1].message if state.history else "",
            )
            mark_done(store, task_id, name, done, epoch=lease.epoch)
            return _summary(state, done=True)
        resume = False
        if state.status is StageStatus.RUNNING:
            p = progress.value if progress else None
            resume = bool(p and p.suspended and p.attempt == state.attempts)
            if not resume:
                state = tr.interrupted(
                    state,
                    began=record.written_at if record else None,
                    now=format_ts(spec.clock()),
                    detail="its worker stopped without an outcome",
                    policy=spec.retry_policy,
                    max_attempts=spec.max_attempts,
                    others=[],
                )
                record = _write(store, state, record, lease)
                continue
        elif not tr.may_attempt(spec.retry_policy, spec.max_attempts, state, [state]):
            state = tr.strand(state)
            record = _write(store, state, record, lease)
            continue
        elif state.status is StageStatus.RETRY:
            # As for a stage: retries back off, and none starts that cannot fit.
            delay = spec.backoff.delay(max(1, tr.current_run(state)))
            left = None if end is None else (end - spec.clock()).total_seconds()
            if left is not None and left < delay + (stage.expected_duration or 0.0):
                return _summary(state, done=False, message=f"deadline: retry in {delay:.3f}s")
            if delay > 0:
                spec.sleep(delay)
        if control.stop_reason is not None:
            return _summary(state, done=False, message=control.stop_reason)
        running = state if resume else tr.start(state)
        if not resume:
            record = _write(store, running, record, lease)
        lease.check()  # the write may have been answered after the local deadline
        box = _Box(progress)
        state, message = _attempt(
            cp,
            control,
            stage,
            name,
            plan,
            (shard_id, shard_spec),
            lease,
            end,
            running,
            box,
            stage_states,
        )
        progress = box.progress
        if message is not None:  # suspended: the next run resumes this attempt
            return _summary(running, done=False, message=message)
        record = _write(store, state, record, lease)


class _Box:
    """The shard's progress record, as the records run last wrote it."""

    def __init__(self, progress: Any) -> None:
        self.progress = progress

    def keep(self, record: Any) -> None:
        self.progress = record


def _attempt(
    cp: Checkpointer,
    control: AttemptControl,
    stage: BaseStage[Any],
    name: str,
    plan: Plan,
    shard: tuple[str, Any],
    lease: LeaseManager,
    end: Any,
    running: ShardState,
    box: _Box,
    stage_states: dict[str, Any],
) -> tuple[ShardState, str | None]:
    """One attempt of one shard: its new state, and the suspension message if it
    stopped at a checkpoint (then the state is ``running``, unchanged)."""
    spec, shard_id = cp.spec, shard[0]
    begin = spec.clock()

    def emit(kind: Any, message: str, batches: int) -> None:
        cp.reporter.emit(
            kind, name, running.attempts, StageStatus.RUNNING, f"[{shard_id}] {message}", batches
        )

    env = RecordsEnv(
        store=cp.store,
        task_id=spec.task_id,
        stage_name=name,
        attempt=running.attempts,
        epoch=lease.epoch,
        clock=spec.clock,
        check_lease=lease.check,
        stop_reason=lambda: control.stop_reason,
        remaining=lambda: None if end is None else (end - spec.clock()).total_seconds(),
        cancelled=lambda: lease.lost,
        batch_estimate=stage.expected_duration or 0.0,
        emit=emit,
        progress=box.progress,
        on_write=box.keep,
        monotonic=lease.monotonic,
        shard=shard_id,
        progress_loaded=True,  # read at the start of this shard run, then kept up to date
    )
    made: list[RecordsRun] = []

    def records(read: Any, **options: Any) -> RecordsRun:
        if made:
            raise InvalidState(f"shard {shard_id!r}: ctx.records() once per attempt")
        made.append(RecordsRun(env, read, **options))
        return made[0]

    ctx = StageContext(
        task_id=spec.task_id,
        stage_name=name,
        attempt=running.attempts,
        logger=cp.reporter.log(name, running.attempts),
        stage_order=spec.stage_names,
        states=stage_states,
        remaining_time=env.remaining,
        cancelled=lambda: lease.lost,
        records=records,
        shard=(shard_id, shard[1], plan.plan_id),
    )
    work = stage_states.get(name) or spec.fresh_state(name)
    try:
        stage.run(work.model_copy(deep=True), ctx)
        if not made:
            raise InvalidState(f"stage {name!r}: a sharded stage must use ctx.records()")
        if not made[0].finished:
            made[0].close()
        why = made[0].outcome_message()
        if why is not None:
            raise RecordsFailed(why)
    except Suspended as stop:
        return running, stop.message
    except LeaseLost:
        raise
    except Exception as exc:  # noqa: BLE001 - a shard's failure is its attempt's
        if made:
            made[0].close()
        failed = tr.entry(
            running.attempts,
            tr.status_before(running),
            begin,
            StageStatus.RETRY,
            spec.clock(),
            f"{type(exc).__name__}: {exc}",
        )
        return tr.fail(running, failed, spec.retry_policy, spec.max_attempts, []), None
    outcome = tr.entry(
        running.attempts,
        tr.status_before(running),
        begin,
        StageStatus.COMPLETE,
        spec.clock(),
        "completed",
    )
    done = running.model_copy(
        update={
            "status": StageStatus.COMPLETE,
            "result": made[0].result,
            "history": tr.append(running.history, outcome),
        }
    )
    return done, None


def _write(store: Any, state: ShardState, record: Any, lease: LeaseManager) -> Any:
    lease.check()
    from eleanor_cloud.errors import Conflict

    try:
        return save_shard(store, state, replaces=record, epoch=lease.epoch)
    except Conflict as exc:
        raise LeaseLost(
            f"shard {state.shard_id!r} of stage {state.stage_name!r}: fenced out "
            f"(its state was written by another worker)"
        ) from exc


def _summary(state: ShardState, *, done: bool, message: str = "") -> ShardSummary:
    if not message and state.history:
        message = state.history[-1].message  # why it ended, e.g. the last failure
    return ShardSummary(
        state.task_id,
        state.stage_name,
        state.shard_id,
        state.status,
        state.attempts,
        done,
        state.result,
        message,
    )
