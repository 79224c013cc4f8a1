"""A Lambda handler factory: run as many stages as fit in one invocation, then return.

::

    from eleanor_cloud.aws import lambda_handler, store_from_env

    def build_engine(event):
        return TaskEngine(event["task_id"], STAGES, MyState, store_from_env())

    handler = lambda_handler(build_engine)

Each invocation runs the task with a deadline of *now + remaining time - safety
margin*: the engine starts no stage whose ``expected_duration`` does not fit before it,
persists every attempt, and releases the lease before the handler returns. The return
value is what ``infra/statemachine/task-loop.asl.json`` loops on::

    {"task_id": "job-42", "status": "RUNNING", "done": false, "next_stage": "train",
     "wait_seconds": 0, "lease_held": false, "lease_watch": null, "fan_out": null,
     "message": "...",
     "stages": [{"name": "extract", "status": "COMPLETE", "attempts": 1,
                 "last_run_seconds": 3.2, "last_message": "", "has_result": false},
                ...],
     "stage_counts": {"COMPLETE": 1, "CREATED": 2},
     "stages_run": ["extract"],
     "results": {"store_url": "s3://bucket/eleanor", "task_prefix": "eleanor/job-42/",
                 "final_stage": "publish", "final_key": "eleanor/job-42/publish.json",
                 "final_url": "s3://bucket/eleanor/job-42/publish.json",
                 "has_final_result": false},
     "truncated": {}, "invocation": {...}}

``done`` is true once the task is COMPLETE, ERROR or CANCELED (the state machine then
succeeds or fails on ``status``). ``wait_seconds`` tells the loop how long to wait
before invoking again: 0 after progress (or after a run that spent its time on the
lease and could start no stage in what was left), ``idle_wait_seconds`` after this run
was fenced out, and while another holder has the lease (``lease_held``) the time until
the lease would count as abandoned, at most ``max_lease_wait``.

**Records stages longer than an invocation.** A stage that iterates ``ctx.records(...)``
(its ``expected_duration`` is read as the duration of *one batch*) checkpoints and
suspends before a batch that would not finish before the deadline; the stage stays
RUNNING (its progress object says ``suspended``), the response is ``done: false`` with
``wait_seconds: 0``, ``stages_run`` names it, and the next invocation resumes the same
attempt at the checkpointed cursor (``stage_resumed``). So such a stage spans as many
invocations as it needs, each getting through the batches that fit.

**Taking a dead holder's lease over across invocations.** A lease counts as abandoned
only once a challenger has seen it stand still for its TTL plus the clock-skew
tolerance (65 s with the defaults), which may be longer than an invocation. No wait
for the lease outlives the invocation's deadline: the run stops watching there and the
response carries what it saw, ``lease_watch: {"version": ..., "seconds": ...}`` (the
watch, rounded down; ``null`` otherwise), and ``wait_seconds`` = what is left of the
watch, rounded up. The state machine waits that long and passes both back in the next
event (``lease_watch`` and ``lease_waited_seconds``); the handler credits the watch
with the wait, and the engine counts it if the lease still stands at that version, so
the next invocation takes over at once instead of watching from zero. Only durations
measured on one host's monotonic clock, and the wait the Wait state guarantees as a
lower bound, are added: no clock is compared across hosts (see
:mod:`eleanor_cloud.aws.lambda_loop`). ``build_engine`` receives the event without
those two keys.

**No results in the response.** Stage results can be any size, and a Lambda response
is limited to 6 MB, a Step Functions payload to 256 KiB: the response carries a
*pointer* instead. ``results.final_key`` is the key of the final stage's object (its
``result`` field is the task's result), ``results.task_prefix`` the prefix under which
every stage's object is ``<task_prefix><stage name>.json``, and ``results.store_url``
the store to open (the value of ``ELEANOR_STORE``); read a result with
``store.load(task_id, stage, State).result`` or ``eleanor-cloud status TASK``. Each stage
entry says whether that stage has a result (``has_result``).

**Bounded size.** ``len(json.dumps(response))`` (ASCII-escaped JSON, never shorter
than its UTF-8 encoding) is at most :data:`RESPONSE_BUDGET_BYTES` (32 KiB), whatever
the task (:mod:`eleanor_cloud.aws.lambda_response`): the loop's fields
(``wait_seconds``, ``lease_held``, ``lease_watch``) are never cut, ``message`` is
clipped to :data:`MESSAGE_MAX_BYTES`, each stage's ``last_message`` to
:data:`STAGE_MESSAGE_MAX_BYTES` (a clipped text ends with ``[... N characters in
all]``). If the stage table still does not fit (thousands of stages), ``stages_run``
keeps its first entries within a quarter of the space left, the stages'
``last_message`` are dropped (``None``), and ``stages`` becomes a contiguous window in
task order starting at the first stage not COMPLETE (the next stage, or the one that
failed); a window that reaches the last stage extends back from there, so a COMPLETE
task shows its last stages. ``stage_counts`` always counts every stage. ``truncated``
says what was cut, ``{}`` when nothing was::

    {"message": 1048576,                                  # characters in the original
     "stage_messages": 3,                                 # stages whose message was cut
     "stages": {"total": 5000, "offset": 4200, "shown": 96},  # stages[i] is stage offset+i
     "stages_run": {"total": 900, "shown": 40},
     "results": "store location too long to report"}     # pointer over 8 KiB: None

The truncation is deterministic: the same summary gives the same response.

**Fanned-out stages** (a stage with ``plan()``): the task event plans the stage and
the response says so in ``fan_out`` (``null`` otherwise): ``{"stage", "plan_id",
"shards", "plan_key"}``; a *shard event* (the task event plus ``"stage"``, ``"shard"``
and optionally ``"plan_id"``) runs one shard and answers with that shard's status
(:mod:`eleanor_cloud.aws.lambda_shard`); once every shard is done, the next task event
joins and goes on. While the task waits for shards run elsewhere (ECS, Batch) and
nothing progressed, ``wait_seconds`` is ``fan_out_wait_seconds``: a plain task loop then
polls until the join.

Errors that retrying cannot fix propagate as Lambda errors, whose ``errorType`` is the
exception class name: ``InvalidEvent`` (not an object with a string ``task_id``, or a
malformed ``lease_watch`` / ``lease_waited_seconds`` or shard fields), ``InvalidKey`` (an
unsafe task id), ``NotPlanned`` / ``UnknownStage`` / ``UnknownShard`` / ``StalePlan`` (a
shard event the plan does not match), ``StageDoesNotFit`` (a stage, or one batch of a
records stage, longer than any invocation), ``CorruptState``, ``AccessDenied``.
``Unavailable`` (S3 throttling or 5xx after the client's own retries) is worth a retry;
the state machine does so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from eleanor_cloud.aws.env import env_float
from eleanor_cloud.aws.lambda_loop import (
    MAX_LEASE_WAIT,
    InvalidEvent,
    InvocationProgress,
    held_lease_wait,
    parse_event,
)
from eleanor_cloud.aws.lambda_response import (
    MESSAGE_MAX_BYTES,
    RESPONSE_BUDGET_BYTES,
    STAGE_MESSAGE_MAX_BYTES,
    bounded_response,
    results_pointer,
)
from eleanor_cloud.aws.lambda_shard import fan_out_of, parse_shard, run_shard_invocation
from eleanor_cloud.clock import Clock, utc_now
from eleanor_cloud.errors import ConfigurationError, InvalidState, LeaseHeld, LeaseLost

if TYPE_CHECKING:
    from eleanor_cloud.engine import EngineEvent, TaskEngine, TaskSummary

__all__ = [
    "DEFAULT_SAFETY_MARGIN",
    "MAX_LEASE_WAIT",
    "MESSAGE_MAX_BYTES",
    "RESPONSE_BUDGET_BYTES",
    "SAFETY_MARGIN_ENV",
    "STAGE_MESSAGE_MAX_BYTES",
    "InvalidEvent",
    "LambdaContext",
    "StageDoesNotFit",
    "lambda_handler",
]

_log = logging.getLogger("eleanor_cloud.aws")

SAFETY_MARGIN_ENV = "ELEANOR_SAFETY_MARGIN_SECONDS"
# Enough to write the last stage state, release the lease and return, with S3 latency
# spikes and a retried request or two included.
DEFAULT_SAFETY_MARGIN = 10.0
# Taking a free lease is a GET and a PUT; an invocation that needed longer than this to
# hold the lease spent its time waiting for it (polling, or watching a silent lease
# before a takeover), so a pause before the first stage says nothing about the stage.
LEASE_WAIT_SLACK = 1.0


class LambdaContext(Protocol):
    """The part of the Lambda context object the handler uses."""

    def get_remaining_time_in_millis(self) -> int: ...


class StageDoesNotFit(InvalidState):
    """No invocation could ever make progress on the next stage: its
    ``expected_duration`` (plus its retry backoff) exceeds a whole invocation's budget,
    or it is a records stage whose slice got through no batch in an invocation where
    nothing else progressed (a single batch does not fit: ``max(slowest batch,
    expected_duration) * 1.2 + 0.5`` s is more than the budget).

    Looping would never make progress: raise the function timeout, shorten or split
    the stage (or its batches), or run the task on ECS instead.
    """


Handler = Callable[[Mapping[str, Any], LambdaContext], dict[str, Any]]
EngineFactory = Callable[[Mapping[str, Any]], "TaskEngine[Any]"]


def _expected_duration(engine: TaskEngine[Any], stage_name: str | None) -> float | None:
    for stage in engine.stages:
        if stage.stage_name == stage_name:
            duration = stage.expected_duration
            return float(duration) if duration is not None else None
    return None


def _window(budget: float, remaining: float, margin: float) -> str:
    return (
        f"an invocation that leaves {budget:.1f}s (remaining {remaining:.1f}s - margin "
        f"{margin:.1f}s)"
    )


def _no_batch_fits(task_id: str, what: str, needed: float | None, window: str) -> StageDoesNotFit:
    expects = f" (expected {needed:.1f}s per batch)" if needed is not None else ""
    return StageDoesNotFit(
        f"task {task_id!r}: {what}: not even one batch{expects} fits in {window}"
    )


def _does_not_fit(
    engine: TaskEngine[Any], summary: TaskSummary, seen: InvocationProgress, window: str
) -> StageDoesNotFit:
    name = seen.empty_slice if seen.ran else summary.next_stage
    needed = _expected_duration(engine, name)
    window = f"{window}: {summary.message or 'paused'}"
    if seen.ran:
        return _no_batch_fits(engine.task_id, f"records stage {name!r}", needed, window)
    expects = f" expects {needed:.1f}s but" if needed is not None else ""
    return StageDoesNotFit(
        f"task {engine.task_id!r}: stage {name!r}{expects} cannot start in {window}"
    )


def lambda_handler(
    build_engine: EngineFactory,
    *,
    safety_margin: float | None = None,
    idle_wait_seconds: int = 5,
    max_lease_wait: int = MAX_LEASE_WAIT,
    fan_out_wait_seconds: int = 30,
    clock: Clock = utc_now,
) -> Handler:
    """Return ``handler(event, context)`` running the task ``build_engine(event)`` builds.

    ``build_engine`` receives the event (a mapping with at least ``task_id``, without
    the loop's ``lease_watch`` / ``lease_waited_seconds``) and returns a
    :class:`~eleanor_cloud.engine.TaskEngine`; build the store once per process (see
    :func:`~eleanor_cloud.aws.store_from_env`), not per call. ``safety_margin`` seconds
    (default ``$ELEANOR_SAFETY_MARGIN_SECONDS``, else 10) are kept free at the end of
    every invocation. ``idle_wait_seconds`` is the wait suggested after this holder was
    fenced out by a takeover (``LeaseLost``); ``max_lease_wait`` bounds the wait
    suggested while another holder has the lease; ``fan_out_wait_seconds`` the wait
    while the task waits for its shards and nothing progressed. ``clock`` is the wall
    clock the deadline is computed on; an injected one (tests) also times the invocation.

    Build the engine with ``wait_for_lease=0`` (the default): a held lease is answered
    with ``wait_seconds`` so the state machine's Wait state waits, not a billed Lambda.
    Give every stage an ``expected_duration``; one without is started whenever any
    time remains.
    """
    if safety_margin is not None and safety_margin < 0:
        raise InvalidState(f"safety_margin must be >= 0 seconds, got {safety_margin}")
    if idle_wait_seconds < 0 or fan_out_wait_seconds < 0:
        raise InvalidState(
            f"idle_wait_seconds and fan_out_wait_seconds must be >= 0, got "
            f"{idle_wait_seconds} and {fan_out_wait_seconds}"
        )
    if (
        isinstance(max_lease_wait, bool)
        or not isinstance(max_lease_wait, int)
        or max_lease_wait < 1
    ):
        raise InvalidState(f"max_lease_wait must be an int >= 1 second, got {max_lease_wait!r}")
    # The same rule as the engine's lease: an injected clock is a test's whole notion of
    # time, so the invocation is timed on it too.
    monotonic = time.monotonic if clock is utc_now else (lambda: clock().timestamp())

    def handler(event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
        started = monotonic()
        remaining = context.get_remaining_time_in_millis() / 1000.0
        margin = (
            safety_margin
            if safety_margin is not None
            else env_float(SAFETY_MARGIN_ENV, DEFAULT_SAFETY_MARGIN)
        )
        loop_event = parse_event(event)
        task_id = loop_event.task_id
        shard = parse_shard(loop_event.event)
        budget = remaining - margin
        if budget <= 0:
            # A fresh invocation never has more: looping would spin without progress.
            raise ConfigurationError(
                f"task {task_id!r}: the invocation has {remaining:.1f}s left, not more than "
                f"the safety margin of {margin:.1f}s; raise the function timeout or lower "
                f"${SAFETY_MARGIN_ENV}"
            )

        engine = build_engine(loop_event.event)
        window = _window(budget, remaining, margin)
        request_id = getattr(context, "aws_request_id", None)

        def invocation() -> dict[str, Any]:
            return {
                "request_id": None if request_id is None else str(request_id)[:128],
                "remaining_at_start_seconds": round(remaining, 3),
                "budget_seconds": round(budget, 3),
                "elapsed_seconds": round(monotonic() - started, 3),
            }

        if shard is not None:
            response = run_shard_invocation(
                engine,
                shard,
                deadline=clock() + timedelta(seconds=budget),
                clock=clock,
                max_lease_wait=max_lease_wait,
                idle_wait_seconds=idle_wait_seconds,
                lease_slack=LEASE_WAIT_SLACK,
                monotonic=monotonic,
                does_not_fit=lambda what, needed: _no_batch_fits(task_id, what, needed, window),
                lease_watch=loop_event.lease_watch,
            )
            return {**response, "invocation": invocation()}
        seen = InvocationProgress()
        ran = seen.ran
        # How this invocation came to hold the lease, and how many seconds that took.
        got_lease: list[tuple[str, float]] = []

        def on_event(ev: EngineEvent) -> None:
            seen.note(ev)
            if ev.kind in ("lease_acquired", "lease_takeover") and not got_lease:
                got_lease.append((ev.kind, monotonic() - started))

        # Imported here: importing this module must not load the engine.
        from eleanor_cloud.engine.events import chain_on_event

        chain_on_event(engine, on_event)
        # The deadline is computed once, from the wall clock the engine also uses.
        deadline = clock() + timedelta(seconds=budget)
        lease_held = False
        wait = 0
        watch: dict[str, Any] | None = None
        try:
            summary: TaskSummary = engine.run(deadline=deadline, lease_watch=loop_event.lease_watch)
        except LeaseHeld as held:
            # Another invocation (a Lambda retry of this very event, or an earlier one
            # still finishing) holds the task, or a dead holder's lease has not been
            # watched for long enough yet: not an error, wait and loop.
            _log.info("task %s: lease held by %s until %s", task_id, held.holder, held.expires_at)
            lease_held = True
            wait, watch = held_lease_wait(
                held,
                clock=clock,
                skew=engine.lease_options.clock_skew_tolerance,
                max_wait=max_lease_wait,
            )
            summary = engine.status()
        except LeaseLost as lost:
            # Fenced out by a takeover: the new holder carries on; this run stops.
            _log.warning("task %s: %s", task_id, lost)
            lease_held = True
            wait = idle_wait_seconds
            summary = engine.status()

        waited_for_lease = bool(got_lease) and (
            got_lease[0][0] == "lease_takeover" or got_lease[0][1] > LEASE_WAIT_SLACK
        )
        fan_out = None if lease_held else fan_out_of(engine, summary)
        # Nothing was started, or only a records stage that got through no batch.
        stuck = not summary.done and not lease_held and seen.stuck
        if fan_out is not None and stuck:
            # Waiting for shards that run elsewhere: poll, do not fail.
            stuck, wait = False, fan_out_wait_seconds
        if stuck and waited_for_lease:
            # Paused before the first stage (or batch), but after spending part of the
            # budget on the lease (a takeover watches the dead holder's lease, then
            # fences every stage). That is no evidence the stage cannot fit: loop at
            # once. The lease is released, so the next invocation holds it at once and
            # judges the stage against its whole budget (and raises below if it still
            # cannot fit).
            _log.info(
                "task %s: %s after %.1fs spent on the lease; looping",
                task_id,
                summary.message or "paused",
                got_lease[0][1],
            )
        elif stuck:
            # The engine paused before starting anything, or a records stage suspended
            # before its first batch with nothing else done: the next stage (plus its
            # retry backoff), or one batch of it, does not fit in a whole invocation,
            # and the next invocation has no more time than this one. Looping would
            # never make progress.
            raise _does_not_fit(engine, summary, seen, window)

        final_stage = summary.stages[-1].name if summary.stages else None
        loop = {"wait_seconds": wait, "lease_held": lease_held, "lease_watch": watch}
        return bounded_response(
            summary,
            loop={**loop, "fan_out": fan_out},
            stages_run=ran,
            pointer=results_pointer(engine.store, task_id, final_stage),
            invocation=invocation(),
        )

    return handler
