"""The container runner for one shard of a fanned-out stage (Batch array jobs, ECS).

::

    python -m eleanor_cloud.aws MODULE:FACTORY --task-id ID --stage STAGE --shard SHARD
    python -m eleanor_cloud.aws MODULE:FACTORY --task-id ID --stage STAGE   # Batch array job

The shard is ``--shard`` (ECS ``RunTask`` with a command override), or, in an AWS Batch
array job, the plan's shard at ``$AWS_BATCH_JOB_ARRAY_INDEX`` (submit the array with the
plan's size: ``fan_out.shards`` of the task's Lambda response, or ``len(plan.shards)``).
``--plan-id`` (optional) refuses to run a shard of another plan version.

It runs ``engine.run_shard`` under :class:`~eleanor_cloud.aws.ContainerRunner`'s
signal handling: on SIGTERM (ECS stop, Spot interruption, ``batch terminate-job``) the
shard's records run checkpoints at its next batch boundary and the lease is released:
exit 75; the next container resumes it at its cursor. Exit codes: 0 the shard is
COMPLETE; 1 it ended ERROR (the join will fail the stage), or the runner failed; 2 bad
input (the stage is not planned, no such stage or shard, an array index past the plan,
another plan version); 3 ``--time-budget`` reached with records left; 75 stopped at a
batch boundary; 76 the grace period ran out mid-batch (nothing recorded: the shard's
lease then expires and the next worker takes the shard over after its TTL + skew
tolerance, resuming from the last checkpoint). 75 and 76 mean *run the same shard
again*; the Batch job definition in ``infra/batch-shards.yaml`` retries exactly those.
Once every shard is done, run the task itself again (``eleanor-cloud run``, or the
Lambda loop) to join.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from eleanor_cloud.aws.lambda_shard import StalePlan, UnknownShard, UnknownStage
from eleanor_cloud.aws.outcome import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_STOPPED,
    EXIT_WORK_LEFT,
    RunOutcome,
)
from eleanor_cloud.aws.runner import ContainerRunner
from eleanor_cloud.errors import InvalidState
from eleanor_cloud.models import StageStatus
from eleanor_cloud.store.state_store import StateStore

if TYPE_CHECKING:
    from eleanor_cloud.engine import TaskEngine
    from eleanor_cloud.engine.lease_watch import LeaseWatch
    from eleanor_cloud.engine.shard_run import ShardSummary

__all__ = [
    "ARRAY_INDEX_ENV",
    "ShardRunner",
    "resolve_shard",
    "run_shard_container",
    "shard_exit_code",
]

ARRAY_INDEX_ENV = "AWS_BATCH_JOB_ARRAY_INDEX"


def resolve_shard(
    engine: TaskEngine[Any],
    stage: str,
    *,
    shard: str | None = None,
    array_index: str | None = None,
    plan_id: str | None = None,
) -> tuple[str, str]:
    """``(shard id, plan id)`` for this container, checked against the stored plan.

    Exactly one of ``shard`` and ``array_index`` (the value of
    ``$AWS_BATCH_JOB_ARRAY_INDEX``). Raises ``UnknownStage``, ``NotPlanned``,
    ``StalePlan``, ``UnknownShard`` or ``InvalidState`` (a bad index) before any work.
    """
    from eleanor_cloud.engine.fanout import NotPlanned, load_plan
    from eleanor_cloud.engine.join import is_sharded

    task = engine.task_id
    if (shard is None) == (array_index is None):
        raise InvalidState(
            f"give exactly one of the shard (--shard) and ${ARRAY_INDEX_ENV} (a Batch array job)"
        )
    if stage not in engine.stage_names:
        raise UnknownStage(f"task {task!r} has no stage {stage!r}")
    where = f"stage {stage!r} of task {task!r}"
    if not is_sharded(engine.stages[engine.stage_names.index(stage)]):
        raise NotPlanned(f"{where} is not fanned out (it defines no plan()): no shards to run")
    plan = load_plan(engine.store, task, stage)
    if plan is None:
        raise NotPlanned(f"{where} is not planned: run the task first, then its shards")
    if plan_id is not None and plan_id != plan.plan_id:
        raise StalePlan(
            f"{where}: this worker is for plan {plan_id}, the stored plan is {plan.plan_id}"
        )
    if array_index is not None:
        text = array_index.strip()
        if not text.isdigit():
            raise InvalidState(f"${ARRAY_INDEX_ENV} must be an index >= 0, got {array_index!r}")
        if int(text) >= len(plan.shards):
            raise InvalidState(
                f"{where}: ${ARRAY_INDEX_ENV} is {text} but plan {plan.plan_id} has "
                f"{len(plan.shards)} shards: submit the array job with size {len(plan.shards)}"
            )
        return plan.shards[int(text)].id, plan.plan_id
    if shard not in {s.id for s in plan.shards}:
        raise UnknownShard(
            f"{where} has no shard {shard!r} in plan {plan.plan_id} ({len(plan.shards)} shards)"
        )
    return str(shard), plan.plan_id


def shard_exit_code(summary: ShardSummary | None, signum: int | None) -> tuple[int, str]:
    """The exit code and message of a shard's run (``None``: stopped before it ran)."""
    name = signal.Signals(signum).name if signum is not None else "a stop"
    if summary is None:
        return EXIT_STOPPED, f"stopped on {name} before the shard started"
    where = f"shard {summary.shard_id!r} of stage {summary.stage_name!r}"
    if summary.done:
        if summary.status is StageStatus.COMPLETE:
            return EXIT_OK, f"{where} is COMPLETE"
        return EXIT_FAILED, f"{where} ended {summary.status.value}: {summary.message}".rstrip(": ")
    if signum is None:
        return EXIT_WORK_LEFT, f"{where}: {summary.message or 'stopped'}; run it again to resume"
    return EXIT_STOPPED, (
        f"stopped on {name} at a batch boundary of {where} (checkpointed); the next run "
        "resumes it at its cursor"
    )


class ShardRunner(ContainerRunner):
    """:class:`ContainerRunner` for one shard: ``engine.run_shard`` instead of ``run``.

    The lease wait defaults to three times the lease's TTL + skew tolerance: a shard's
    run takes no lease watch, so each retry watches a dead holder's lease from zero
    (once it looks expired by this clock, the run itself watches it for the TTL + skew).
    """

    def __init__(
        self,
        engine: TaskEngine[Any],
        stage: str,
        shard: str,
        *,
        plan_id: str | None = None,
        lease_wait: float | None = None,
        **options: Any,
    ) -> None:
        lease = engine.lease_options
        if lease_wait is None:
            lease_wait = 3 * (lease.ttl + lease.clock_skew_tolerance)
        super().__init__(engine, lease_wait=lease_wait, **options)
        self.stage, self.shard, self.plan_id = stage, shard, plan_id

    def _run_once(self, budget: float | None, watch: LeaseWatch | None) -> Any:
        return self.engine.run_shard(
            self.stage, self.shard, time_budget=budget, plan_id=self.plan_id
        )

    def _unstarted(self) -> Any:
        return None

    def _outcome(self, result: Any, signum: int | None) -> RunOutcome:
        code, message = shard_exit_code(result, signum)
        return RunOutcome(code, None, signum, message=message, shard=result)

    def _stopping(self) -> str:
        return f"letting shard {self.shard!r} of stage {self.stage!r} reach its next batch boundary"


def run_shard_container(
    build: Callable[[str, StateStore], TaskEngine[Any]],
    task_id: str,
    store: StateStore,
    stage: str,
    *,
    shard: str | None = None,
    array_index: str | None = None,
    plan_id: str | None = None,
    grace_seconds: float | None = None,
    time_budget: float | None = None,
    exit: bool = True,
) -> RunOutcome:
    """Build the engine, resolve the shard (:func:`resolve_shard`), run it under
    :class:`ShardRunner` and exit with the outcome's code (``exit=False`` returns it;
    an interruption always exits)."""
    engine = build(task_id, store)
    shard_id, plan = resolve_shard(
        engine, stage, shard=shard, array_index=array_index, plan_id=plan_id
    )
    runner = ShardRunner(
        engine, stage, shard_id, plan_id=plan, grace_seconds=grace_seconds, time_budget=time_budget
    )
    outcome = runner.run()
    if exit or outcome.interrupted:
        outcome.exit()
    return outcome
