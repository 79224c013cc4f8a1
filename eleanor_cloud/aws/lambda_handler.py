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
     "wait_seconds": 0, "lease_held": false, "message": "...", "result": null,
     "stages": [...], "stages_run": ["extract"], "invocation": {...}}

``done`` is true once the task is COMPLETE, ERROR or CANCELED (the state machine then
succeeds or fails on ``status``). ``wait_seconds`` tells the loop how long to wait
before invoking again: 0 after progress (or after a run that spent its time waiting
for or watching the lease and could start no stage in what was left), the time until the
lease expires when another invocation (a Lambda retry of the same event, still running)
holds it.

Errors that retrying cannot fix propagate as Lambda errors, whose ``errorType`` is the
exception class name: ``InvalidKey`` (bad event), ``StageDoesNotFit`` (a stage longer
than any invocation), ``CorruptState``, ``AccessDenied``. ``Unavailable`` (S3 throttling
or 5xx after the client's own retries) is worth a retry; the state machine does so.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from eleanor_cloud.aws.env import env_float
from eleanor_cloud.clock import Clock, parse_ts, utc_now
from eleanor_cloud.errors import (
    ConfigurationError,
    InvalidState,
    LeaseHeld,
    LeaseLost,
)
from eleanor_cloud.keys import validate_task_id

if TYPE_CHECKING:
    from eleanor_cloud.engine import EngineEvent, TaskEngine, TaskSummary

__all__ = [
    "DEFAULT_SAFETY_MARGIN",
    "SAFETY_MARGIN_ENV",
    "LambdaContext",
    "StageDoesNotFit",
    "lambda_handler",
]

_log = logging.getLogger("eleanor_cloud.aws")

SAFETY_MARGIN_ENV = "ELEANOR_SAFETY_MARGIN_SECONDS"
# Enough to write the last stage state, release the lease and return, with S3 latency
# spikes and a retried request or two included.
DEFAULT_SAFETY_MARGIN = 10.0
# Waiting for another invocation's lease is bounded so a long TTL never parks the
# state machine for long without looking again.
MAX_LEASE_WAIT = 300
# Taking a free lease is a GET and a PUT; an invocation that needed longer than this to
# hold the lease spent its time waiting for it (polling, or watching a silent lease
# before a takeover), so a pause before the first stage says nothing about the stage.
LEASE_WAIT_SLACK = 1.0


class LambdaContext(Protocol):
    """The part of the Lambda context object the handler uses."""

    def get_remaining_time_in_millis(self) -> int: ...


class StageDoesNotFit(InvalidState):
    """The next stage's ``expected_duration`` (plus its retry backoff) exceeds a whole
    invocation's budget, so no invocation could ever start it.

    Looping would never make progress: raise the function timeout, shorten or split
    the stage, or run the task on ECS instead.
    """


Handler = Callable[[Mapping[str, Any], LambdaContext], dict[str, Any]]
EngineFactory = Callable[[Mapping[str, Any]], "TaskEngine[Any]"]


def _expected_duration(engine: Any, stage_name: str | None) -> float | None:
    for stage in getattr(engine, "stages", ()) or ():
        if getattr(stage, "name", None) == stage_name:
            duration = getattr(stage, "expected_duration", None)
            return float(duration) if duration is not None else None
    return None


def _lease_wait(expires_at: str | None, clock: Clock, skew: float) -> int:
    if expires_at is None:
        return 5
    seconds = (parse_ts(expires_at) - clock()).total_seconds() + skew
    return max(1, min(MAX_LEASE_WAIT, math.ceil(seconds)))


def lambda_handler(
    build_engine: EngineFactory,
    *,
    safety_margin: float | None = None,
    idle_wait_seconds: int = 5,
    clock: Clock = utc_now,
) -> Handler:
    """Return ``handler(event, context)`` running the task ``build_engine(event)`` builds.

    ``build_engine`` receives the event (a mapping with at least ``task_id``) and returns
    a :class:`~eleanor_cloud.engine.TaskEngine`; build the store once per process (see
    :func:`~eleanor_cloud.aws.store_from_env`), not per call. ``safety_margin`` seconds
    (default ``$ELEANOR_SAFETY_MARGIN_SECONDS``, else 10) are kept free at the end of
    every invocation. ``idle_wait_seconds`` is the wait suggested after this holder was
    fenced out by a takeover (``LeaseLost``).

    Build the engine with ``wait_for_lease=0`` (the default): a held lease is answered
    with ``wait_seconds`` so the state machine's Wait state waits, not a billed Lambda.
    Give every stage an ``expected_duration``; one without is started whenever any
    time remains.
    """
    if safety_margin is not None and safety_margin < 0:
        raise InvalidState(f"safety_margin must be >= 0 seconds, got {safety_margin}")
    if idle_wait_seconds < 0:
        raise InvalidState(f"idle_wait_seconds must be >= 0, got {idle_wait_seconds}")

    def handler(event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
        started = time.monotonic()
        remaining = context.get_remaining_time_in_millis() / 1000.0
        margin = (
            safety_margin
            if safety_margin is not None
            else env_float(SAFETY_MARGIN_ENV, DEFAULT_SAFETY_MARGIN)
        )
        if not isinstance(event, Mapping) or not isinstance(event.get("task_id"), str):
            raise InvalidState(
                f"the event must be an object with a string task_id, got {event!r:.200}"
            )
        task_id = validate_task_id(event["task_id"])
        budget = remaining - margin
        if budget <= 0:
            # A fresh invocation never has more: looping would spin without progress.
            raise ConfigurationError(
                f"task {task_id!r}: the invocation has {remaining:.1f}s left, not more than "
                f"the safety margin of {margin:.1f}s; raise the function timeout or lower "
                f"${SAFETY_MARGIN_ENV}"
            )

        engine = build_engine(event)
        ran: list[str] = []
        # How this invocation came to hold the lease, and how many seconds that took.
        got_lease: list[tuple[str, float]] = []

        def on_event(ev: EngineEvent) -> None:
            if ev.kind == "stage_started" and ev.stage_name is not None:
                ran.append(ev.stage_name)
            elif ev.kind in ("lease_acquired", "lease_takeover") and not got_lease:
                got_lease.append((ev.kind, time.monotonic() - started))

        # Imported here: importing this module must not load the engine.
        from eleanor_cloud.engine.events import chain_on_event

        chain_on_event(engine, on_event)
        # The deadline is computed once, from the wall clock the engine also uses.
        deadline = clock() + timedelta(seconds=budget)
        lease_held = False
        wait = 0
        try:
            summary: TaskSummary = engine.run(deadline=deadline)
        except LeaseHeld as held:
            # Another invocation (typically a Lambda retry of this very event, or an
            # earlier one still finishing) holds the task: not an error, wait and loop.
            _log.info("task %s: lease held by %s until %s", task_id, held.holder, held.expires_at)
            lease_held = True
            skew = float(getattr(engine, "clock_skew_tolerance", 0.0) or 0.0)
            wait = _lease_wait(held.expires_at, clock, skew)
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
        if not summary.done and not lease_held and not ran and waited_for_lease:
            # Paused before the first stage, but after spending part of the budget on
            # the lease (a takeover always watches the dead holder's lease for its TTL
            # first). That is no evidence the stage cannot fit: loop at once. The lease
            # is released, so the next invocation holds it at once and judges the
            # stage against its whole budget (and raises below if it still cannot fit).
            _log.info(
                "task %s: %s after %.1fs spent on the lease; looping",
                task_id,
                summary.message or "paused",
                got_lease[0][1],
            )
        elif not summary.done and not lease_held and not ran:
            # The engine paused before starting anything: the next stage (plus its retry
            # backoff) does not fit in a whole invocation, and the next invocation has
            # no more time than this one. Looping would never make progress.
            needed = _expected_duration(engine, summary.next_stage)
            expects = f" expects {needed:.1f}s but" if needed is not None else ""
            raise StageDoesNotFit(
                f"task {task_id!r}: stage {summary.next_stage!r}{expects} cannot start in an "
                f"invocation that leaves {budget:.1f}s (remaining {remaining:.1f}s - margin "
                f"{margin:.1f}s): {summary.message or 'paused'}"
            )

        response = summary.to_dict()
        response.update(
            {
                "wait_seconds": wait,
                "lease_held": lease_held,
                "stages_run": ran,
                "invocation": {
                    "request_id": getattr(context, "aws_request_id", None),
                    "remaining_at_start_seconds": round(remaining, 3),
                    "budget_seconds": round(budget, 3),
                    "elapsed_seconds": round(time.monotonic() - started, 3),
                },
            }
        )
        return response

    return handler
