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
     "wait_seconds": 0, "lease_held": false, "message": "...",
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
before invoking again: 0 after progress (or after a run that spent its time waiting
for or watching the lease and could start no stage in what was left), the time until the
lease expires when another invocation (a Lambda retry of the same event, still running)
holds it.

**No results in the response.** Stage results can be any size, and a Lambda response
is limited to 6 MB, a Step Functions payload to 256 KiB: the response carries a
*pointer* instead. ``results.final_key`` is the key of the final stage's object (its
``result`` field is the task's result), ``results.task_prefix`` the prefix under which
every stage's object is ``<task_prefix><stage name>.json``, and ``results.store_url``
the store to open (the value of ``ELEANOR_STORE``); read a result with
``store.load(task_id, stage, State).result`` or ``eleanor-cloud status TASK``. Each stage
entry says whether that stage has a result (``has_result``). The pointer's fields are
``None`` if the engine does not expose its store.

**Bounded size.** ``len(json.dumps(response))`` (ASCII-escaped JSON, never shorter
than its UTF-8 encoding) is at most :data:`RESPONSE_BUDGET_BYTES` (32 KiB), whatever
the task: ``message`` is clipped to :data:`MESSAGE_MAX_BYTES`, each stage's
``last_message`` to :data:`STAGE_MESSAGE_MAX_BYTES` (a clipped text ends with
``[... N characters in all]``). If the stage table still does not fit (thousands of
stages), ``stages_run`` keeps its first entries within a quarter of the space left,
the stages' ``last_message`` are dropped (``None``), and ``stages`` becomes a
contiguous window in task order starting at the first stage not COMPLETE (the next
stage, or the one that failed); a window that reaches the last stage extends back from
there, so a COMPLETE task shows its last stages. ``stage_counts`` always counts every
stage. ``truncated`` says what was cut, ``{}`` when nothing was::

    {"message": 1048576,                                  # characters in the original
     "stage_messages": 3,                                 # stages whose message was cut
     "stages": {"total": 5000, "offset": 4200, "shown": 96},  # stages[i] is stage offset+i
     "stages_run": {"total": 900, "shown": 40},
     "results": "store location too long to report"}     # pointer over 8 KiB: None

The truncation is deterministic: the same summary gives the same response.

Errors that retrying cannot fix propagate as Lambda errors, whose ``errorType`` is the
exception class name: ``InvalidKey`` (bad event), ``StageDoesNotFit`` (a stage longer
than any invocation), ``CorruptState``, ``AccessDenied``. ``Unavailable`` (S3 throttling
or 5xx after the client's own retries) is worth a retry; the state machine does so.
"""

from __future__ import annotations

import json
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
from eleanor_cloud.keys import task_prefix, validate_task_id

if TYPE_CHECKING:
    from eleanor_cloud.engine import EngineEvent, StageSummary, TaskEngine, TaskSummary

__all__ = [
    "DEFAULT_SAFETY_MARGIN",
    "MESSAGE_MAX_BYTES",
    "RESPONSE_BUDGET_BYTES",
    "SAFETY_MARGIN_ENV",
    "STAGE_MESSAGE_MAX_BYTES",
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

# The response's size bound, as len(json.dumps(response)). Step Functions refuses a
# task result over 256 KiB (States.DataLimitExceeded) and Lambda one over 6 MB; an
# eighth of the smaller limit leaves the state machine room for its own input and
# keeps the execution history readable, and still shows about a hundred stages in full.
RESPONSE_BUDGET_BYTES = 32 * 1024
# A stop reason or failure text can be any size (an exception's str); these caps keep
# a few of them from eating the budget the stage table needs.
MESSAGE_MAX_BYTES = 2048
STAGE_MESSAGE_MAX_BYTES = 256
# A pointer longer than this (a local store under a very deep directory) is dropped
# rather than clipped: half a URL points nowhere. S3 keys are at most 1024 bytes.
POINTER_MAX_BYTES = 8192
# Room kept for the "truncated" notes, which are filled in after the lists are cut.
_NOTES_RESERVE = 256


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


def _size(value: Any) -> int:
    """What the budget counts: ASCII-escaped JSON, never shorter than its UTF-8."""
    return len(json.dumps(value))


def _clip(text: str, max_bytes: int) -> tuple[str, bool]:
    """``text`` cut so that its JSON string body is at most ``max_bytes``; whether cut.

    Cut by escaped size, not characters: a control or non-ASCII character costs up
    to 12 bytes escaped. A clipped text ends with how long the original was.
    """
    if _size(text) - 2 <= max_bytes:
        return text, False
    marker = f" [... {len(text)} characters in all]"
    room = max(0, max_bytes - len(marker))
    # The escaped size of a prefix grows with its length: bisect for the longest fit.
    lo, hi = 0, min(len(text), room)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _size(text[:mid]) - 2 <= room:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo] + marker, True


def _store_of(engine: Any) -> Any:
    """The engine's StateStore: a public ``store`` if it has one, else the one it was
    built with under the private names engines have used; ``None`` if none is found.

    The pointer is the only use, and a missing pointer is reported as ``None`` fields
    (and caught by the tests), so looking is better than demanding an attribute.
    """
    from eleanor_cloud.store import StateStore

    for attribute in ("store", "_store", "_user_store"):
        store = getattr(engine, attribute, None)
        if isinstance(store, StateStore):
            return store
    return None


def _skew(engine: Any) -> float:
    """The engine's clock-skew tolerance (an attribute, or its lease options)."""
    value = getattr(engine, "clock_skew_tolerance", None)
    if value is None:
        lease = getattr(getattr(engine, "spec", None), "lease", None)
        value = getattr(lease, "clock_skew_tolerance", None)
    return float(value or 0.0)


def _pointer(engine: Any, task_id: str, final_stage: str | None) -> dict[str, Any]:
    """Where the results are: the store, the task's prefix, the final stage's object."""
    pointer: dict[str, Any] = {
        "store_url": None,
        "task_prefix": None,
        "final_stage": final_stage,
        "final_key": None,
        "final_url": None,
    }
    store = _store_of(engine)
    if store is None:
        return pointer
    try:
        where = str(store.backend.description)
        prefix = str(store.prefix)
        pointer["store_url"] = f"{where}/{prefix}" if prefix else where
        pointer["task_prefix"] = task_prefix(prefix, task_id)
        if final_stage is not None:
            pointer["final_key"] = str(store.stage_key(task_id, final_stage))
            pointer["final_url"] = f"{where}/{pointer['final_key']}"
    except (AttributeError, TypeError) as exc:
        # The work is done and checkpointed: a store we cannot describe costs the
        # pointer, not the invocation.
        _log.warning("task %s: cannot describe the store: %s", task_id, exc)
        return {k: (v if k == "final_stage" else None) for k, v in pointer.items()}
    return pointer


def _stage_entry(stage: StageSummary, notes: dict[str, Any]) -> dict[str, Any]:
    message = stage.last_message
    if message is not None:
        message, cut = _clip(str(message), STAGE_MESSAGE_MAX_BYTES)
        if cut:
            notes["stage_messages"] = notes.get("stage_messages", 0) + 1
    return {
        "name": stage.name,
        "status": stage.status.value,
        "attempts": stage.attempts,
        "last_run_seconds": stage.last_run_seconds,
        "last_message": message,
        "has_result": stage.result is not None,
    }


def _window(sizes: list[int], start: int, room: int) -> tuple[int, int]:
    """The contiguous ``[lo, hi)`` around ``start`` whose ``sizes`` fit in ``room``:
    forward from ``start`` first, then backward from it once the end is reached."""
    lo = hi = start
    used = 0
    while hi < len(sizes) and used + sizes[hi] <= room:
        used += sizes[hi]
        hi += 1
    while hi == len(sizes) and lo > 0 and used + sizes[lo - 1] <= room:
        used += sizes[lo - 1]
        lo -= 1
    return lo, hi


def _bounded_response(
    summary: TaskSummary,
    *,
    loop: Mapping[str, Any],
    stages_run: list[str],
    pointer: dict[str, Any],
    invocation: dict[str, Any],
    budget: int = RESPONSE_BUDGET_BYTES,
) -> dict[str, Any]:
    """The handler's response for ``summary``: no results, at most ``budget`` bytes.

    ``loop`` holds the fields the state machine reads besides the summary's own
    (``wait_seconds``, ``lease_held``). See the module docstring for the shape and
    how it is cut to fit.
    """
    from eleanor_cloud.models import StageStatus

    notes: dict[str, Any] = {}
    original = summary.message or ""
    message, cut = _clip(original, MESSAGE_MAX_BYTES)
    if cut:
        notes["message"] = len(original)
    if _size(pointer) > POINTER_MAX_BYTES:
        pointer = {k: (v if k == "final_stage" else None) for k, v in pointer.items()}
        notes["results"] = "store location too long to report"
    counts: dict[str, int] = {}
    for stage in summary.stages:
        counts[stage.status.value] = counts.get(stage.status.value, 0) + 1
    response: dict[str, Any] = {
        "task_id": summary.task_id,
        "status": summary.status.value,
        "done": summary.done,
        "next_stage": summary.next_stage,
        **loop,
        "message": message,
        "stages": [],
        "stage_counts": counts,
        "stages_run": [],
        "results": {**pointer, "has_final_result": summary.result is not None},
        "truncated": notes,
        "invocation": invocation,
    }
    entries = [_stage_entry(stage, notes) for stage in summary.stages]
    response["stages"], response["stages_run"] = entries, list(stages_run)
    if _size(response) <= budget:
        return response

    # Too big: cut deterministically, then fill in the notes.
    response["stages"], response["stages_run"] = [], []
    room = budget - _size(response) - _NOTES_RESERVE
    kept_run: list[str] = []
    used = 0
    for name in stages_run:
        if used + _size(name) + 2 > room // 4:
            break
        kept_run.append(name)
        used += _size(name) + 2
    if len(kept_run) < len(stages_run):
        notes["stages_run"] = {"total": len(stages_run), "shown": len(kept_run)}
    room -= used
    start = next(
        (i for i, s in enumerate(summary.stages) if s.status is not StageStatus.COMPLETE),
        len(entries),
    )
    # Each entry costs its JSON and a ", " separator (the first one's is slack).
    lo, hi = _window([_size(e) + 2 for e in entries], start, room)
    if (lo, hi) != (0, len(entries)):
        # The messages are what can be spared first: more stages fit without them.
        messages = sum(1 for e in entries if e["last_message"])
        entries = [{**e, "last_message": None} for e in entries]
        if messages:
            notes["stage_messages"] = messages
        lo, hi = _window([_size(e) + 2 for e in entries], start, room)
    if (lo, hi) != (0, len(entries)):
        notes["stages"] = {"total": len(entries), "offset": lo, "shown": hi - lo}
    response["stages"], response["stages_run"] = entries[lo:hi], kept_run
    if _size(response) > budget:
        # Unreachable with the caps above (the fixed part is a few KiB at most); kept
        # so that no input can ever produce a response Step Functions refuses.
        response["stages"], response["stages_run"], response["message"] = [], [], ""
        notes["stages"] = {"total": len(entries), "offset": 0, "shown": 0}
        notes["stages_run"] = {"total": len(stages_run), "shown": 0}
        notes["message"] = len(original)
    return response


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
            wait = _lease_wait(held.expires_at, clock, _skew(engine))
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

        request_id = getattr(context, "aws_request_id", None)
        final_stage = summary.stages[-1].name if summary.stages else None
        return _bounded_response(
            summary,
            loop={"wait_seconds": wait, "lease_held": lease_held},
            stages_run=ran,
            pointer=_pointer(engine, task_id, final_stage),
            invocation={
                "request_id": None if request_id is None else str(request_id)[:128],
                "remaining_at_start_seconds": round(remaining, 3),
                "budget_seconds": round(budget, 3),
                "elapsed_seconds": round(time.monotonic() - started, 3),
            },
        )

    return handler
