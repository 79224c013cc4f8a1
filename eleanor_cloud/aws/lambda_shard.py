"""Fan-out on Lambda: the shard event, the task response's ``fan_out``, one shard's run.

A stage that defines ``plan()`` is fanned out (:mod:`eleanor_cloud.engine.fanout`). The
normal task event plans it: the response then carries ``fan_out`` (``null`` otherwise)::

    "fan_out": {"stage": "load", "plan_id": "9f0c...", "shards": 40,
                "plan_key": "eleanor/job-42/load/plan.json"}

``plan_key`` is the plan object's key in the store (for S3, the key in the bucket), which
the state machine's Distributed Map reads with an ``ItemReader``
(``infra/statemachine/shard-fan-out.asl.json``). Each item then loops on a **shard
event**, the task event plus::

    {"stage": "load", "shard": "p17", "plan_id": "9f0c..."}   # plan_id optional

and gets a bounded response (no results, at most a few KiB)::

    {"task_id": "job-42", "stage": "load", "shard": "p17", "plan_id": "9f0c...",
     "status": "RUNNING", "attempts": 1, "done": false, "wait_seconds": 0,
     "lease_held": false, "lease_watch": null, "batches": 3, "message": "...",
     "counts": {"total": 250000, "success": 7000, "fail": 2, "unprocessed": 242998},
     "truncated": {}, "invocation": {...}}

``done`` is true once the shard ended (COMPLETE, or ERROR: the join then fails the
stage); until then the loop invokes again after ``wait_seconds`` (0 after progress; while
another worker holds the shard's lease, until that lease would expire, at most
``max_lease_wait``). Once every shard is done, the next task event joins. ``batches``:
those this invocation got through; ``counts``: the shard's so far, from its result once
COMPLETE, else from its records checkpoint (one GET).

Bad shard events fail the invocation with an ``errorType`` the state machine maps to a
failed execution, never retried: ``NotPlanned`` (the stage has no plan: run the task
event first), ``UnknownStage``, ``UnknownShard`` (not in the plan), ``StalePlan`` (the
event's ``plan_id`` is not the stored plan's: a worker of another plan version),
``InvalidEvent``/``InvalidKey`` (malformed). ``StageDoesNotFit`` as for tasks: the
shard got through no batch in an invocation where nothing else progressed.

A shard's lease watch is carried between invocations like a task's (``lease_watch`` in
the response, credited with the Wait by the next event), so a chain of invocations
shorter than the lease TTL plus the skew tolerance takes a dead worker's shard over.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eleanor_cloud import keys
from eleanor_cloud.aws.lambda_loop import InvalidEvent
from eleanor_cloud.aws.lambda_response import MESSAGE_MAX_BYTES, clip
from eleanor_cloud.clock import Clock
from eleanor_cloud.errors import InvalidState, LeaseHeld, LeaseLost
from eleanor_cloud.models import StageStatus

if TYPE_CHECKING:
    from datetime import datetime

    from eleanor_cloud.engine import EngineEvent, TaskEngine, TaskSummary

__all__ = [
    "SHARD_KEYS",
    "ShardEvent",
    "StalePlan",
    "UnknownShard",
    "UnknownStage",
    "fan_out_of",
    "parse_shard",
    "run_shard_invocation",
]

_log = logging.getLogger("eleanor_cloud.aws")

STAGE_KEY, SHARD_KEY, PLAN_ID_KEY = "stage", "shard", "plan_id"
SHARD_KEYS = (STAGE_KEY, SHARD_KEY, PLAN_ID_KEY)
PLAN_ID_MAX_CHARS = 64  # plan ids are 32 hex digits
_UNKNOWN_WAIT = 5


class UnknownStage(InvalidEvent):
    """The shard event names a stage the task does not have."""


class UnknownShard(InvalidEvent):
    """The shard event names a shard that is not in the stage's plan."""


class StalePlan(InvalidEvent):
    """The shard event's ``plan_id`` is not the stored plan's (another plan version)."""


@dataclass(frozen=True)
class ShardEvent:
    """A shard event, read: which shard of which stage, for which plan."""

    stage: str
    shard: str
    plan_id: str | None


def parse_shard(event: Mapping[str, Any]) -> ShardEvent | None:
    """The shard an event asks for (``None``: a task event); ``InvalidEvent`` if malformed.

    An event is a shard event when it has a ``shard`` key; it then needs ``stage``.
    """
    if SHARD_KEY not in event:
        return None
    stage, shard, plan_id = (event.get(k) for k in SHARD_KEYS)
    if not isinstance(stage, str) or not isinstance(shard, str):
        raise InvalidEvent(
            f"a shard event needs string {STAGE_KEY!r} and {SHARD_KEY!r} (and optionally "
            f"{PLAN_ID_KEY!r}), got stage={stage!r:.100} shard={shard!r:.100}"
        )
    if plan_id is not None and (
        not isinstance(plan_id, str) or not 0 < len(plan_id) <= PLAN_ID_MAX_CHARS
    ):
        raise InvalidEvent(f"{PLAN_ID_KEY} must be null or a plan id, got {plan_id!r:.100}")
    return ShardEvent(keys.validate_stage_name(stage), keys.validate_shard_id(shard), plan_id)


def fan_out_of(engine: TaskEngine[Any], summary: TaskSummary) -> dict[str, Any] | None:
    """The fanned-out stage the task now waits on, as the response's ``fan_out``.

    Read from what is stored, not from the engine's internals: the next stage is sharded,
    RUNNING, and has a plan (one GET, only when the next stage is a sharded one).
    """
    from eleanor_cloud.engine.fanout import load_plan
    from eleanor_cloud.engine.join import is_sharded

    name = summary.next_stage
    if summary.done or name is None:
        return None
    stage = next((s for s in engine.stages if s.stage_name == name), None)
    status = next((s.status for s in summary.stages if s.name == name), None)
    if stage is None or not is_sharded(stage) or status is not StageStatus.RUNNING:
        return None
    plan = load_plan(engine.store, engine.task_id, name)
    if plan is None:
        return None
    return {
        "stage": name,
        "plan_id": plan.plan_id,
        "shards": len(plan.shards),
        "plan_key": keys.plan_key(engine.store.prefix, engine.task_id, name),
    }


def _classify(engine: TaskEngine[Any], shard: ShardEvent, exc: InvalidState) -> Exception:
    """The event's mistake behind ``exc`` (run_shard refuses it before any work)."""
    from eleanor_cloud.engine.fanout import NotPlanned, load_plan
    from eleanor_cloud.engine.join import is_sharded

    task, where = engine.task_id, f"stage {shard.stage!r} of task {engine.task_id!r}"
    if not is_sharded(engine.stages[engine.stage_names.index(shard.stage)]):
        return NotPlanned(f"{where} is not fanned out (it defines no plan()): no shards to run")
    if isinstance(exc, NotPlanned):
        return exc
    plan = load_plan(engine.store, task, shard.stage)
    if plan is None:
        return NotPlanned(f"{where} is not planned: run the task event first, then its shards")
    if shard.plan_id is not None and shard.plan_id != plan.plan_id:
        return StalePlan(
            f"{where}: the event is for plan {shard.plan_id}, the stored plan is "
            f"{plan.plan_id} (a worker of another plan version)"
        )
    if shard.shard not in {s.id for s in plan.shards}:
        return UnknownShard(
            f"{where} has no shard {shard.shard!r} in plan {plan.plan_id} "
            f"({len(plan.shards)} shards)"
        )
    return exc


def _counts(result: Any) -> dict[str, int] | None:
    if result is None:
        return None
    return {
        "total": result.total_count,
        "success": result.success_count,
        "fail": result.fail_count,
        "unprocessed": result.unprocessed_count,
    }


def run_shard_invocation(
    engine: TaskEngine[Any],
    shard: ShardEvent,
    *,
    deadline: datetime,
    clock: Clock,
    max_lease_wait: int,
    idle_wait_seconds: int,
    lease_slack: float,
    monotonic: Callable[[], float],
    does_not_fit: Callable[[str, float | None], Exception],
    lease_watch: Any = None,
) -> dict[str, Any]:
    """Run one shard until it ends or the deadline; the response's shard fields.

    ``does_not_fit(stage, expected)`` builds the error raised when the invocation made
    no progress at all (see the module docstring).
    """
    from eleanor_cloud.engine.events import chain_on_event
    from eleanor_cloud.engine.fanout import ShardState, load_shard, read_done
    from eleanor_cloud.engine.progress import Progress, result_of
    from eleanor_cloud.store import documents

    task, store = engine.task_id, engine.store
    if shard.stage not in engine.stage_names:
        raise UnknownStage(
            f"task {task!r} has no stage {shard.stage!r} (stages: {list(engine.stage_names)})"
        )
    before = load_shard(store, task, shard.stage, shard.shard)
    batches = [0]

    def on_event(ev: EngineEvent) -> None:
        if ev.stage_name == shard.stage and ev.kind == "stage_checkpointed":
            batches[0] = max(batches[0], ev.batches)

    chain_on_event(engine, on_event)
    lease_held, wait = False, 0
    watch_field: dict[str, Any] | None = None
    started = monotonic()
    try:
        summary = engine.run_shard(
            shard.stage,
            shard.shard,
            deadline=deadline,
            plan_id=shard.plan_id,
            lease_watch=lease_watch,
        )
    except LeaseHeld as held:
        # Another worker runs this shard (a retried event, an earlier invocation still
        # finishing, or a dead one whose lease has not expired): carry the watch and
        # wait, as for a task's lease.
        from eleanor_cloud.aws.lambda_loop import held_lease_wait

        _log.info("task %s shard %s: lease held by %s", task, shard.shard, held.holder)
        skew = engine.lease_options.clock_skew_tolerance
        wait, watch_field = held_lease_wait(held, clock=clock, skew=skew, max_wait=max_lease_wait)
        lease_held, summary = True, None
    except LeaseLost as lost:
        _log.warning("task %s shard %s: %s", task, shard.shard, lost)
        lease_held, wait, summary = True, idle_wait_seconds, None
    except InvalidState as exc:
        raise _classify(engine, shard, exc) from exc
    elapsed = monotonic() - started

    state: ShardState | None = before.value if before is not None else None
    if summary is not None:
        status, attempts, done = summary.status, summary.attempts, summary.done
        message, result = summary.message, summary.result
    else:
        status = state.status if state is not None else StageStatus.CREATED
        attempts, done, message, result = (state.attempts if state else 0), False, "", None
        message = "lease held by another worker" if lease_held else message
    if summary is not None and not done:
        # The same attempt resumed, or a fresh one started: either way no attempt
        # ended, and no batch was got through: the next invocation would do the same.
        same = state.attempts if state and state.status is StageStatus.RUNNING else None
        expected = same if same is not None else (state.attempts if state else 0) + 1
        if batches[0] == 0 and attempts == expected:
            if elapsed > lease_slack:
                # The time went on the lease (a takeover watches it first): loop.
                _log.info("task %s shard %s: no batch after %.1fs", task, shard.shard, elapsed)
            else:
                stage = engine.stages[engine.stage_names.index(shard.stage)]
                duration = stage.expected_duration
                raise does_not_fit(
                    f"shard {shard.shard!r} of records stage {shard.stage!r}",
                    float(duration) if duration is not None else None,
                )
    if result is None and not lease_held:
        # Not completed (suspended, or ended ERROR): the counts its checkpoint holds.
        progress = documents.load_progress(store, task, shard.stage, Progress, shard=shard.shard)
        if progress is not None:
            result = result_of(progress.value)
    if done and status is StageStatus.ERROR and not message:
        message = read_done(store, task, shard.stage, shard.shard).message  # why it failed
    text, cut = clip(message or "", MESSAGE_MAX_BYTES)
    return {
        "task_id": task,
        "stage": shard.stage,
        "shard": shard.shard,
        "plan_id": shard.plan_id,
        "status": status.value,
        "attempts": attempts,
        "done": done,
        "wait_seconds": wait,
        "lease_held": lease_held,
        "lease_watch": watch_field if lease_held else None,
        "batches": batches[0],
        "message": text,
        "counts": _counts(result),
        "truncated": {"message": len(message or "")} if cut else {},
    }
