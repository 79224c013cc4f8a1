"""Every status change of a stage and every history entry, as pure functions.

No store, no backend, no thread, no clock: each function takes the state it changes
and the times it needs, and returns a new state. The engine's I/O (:mod:`.run`,
:mod:`.attempt`, :mod:`.saga`, :mod:`.admin`) calls these and only persists what they
return, so "where does a stage change status?" has one answer: here.

Retry accounting is derived from the persisted history alone, so it survives crashes
and hosts: no counter lives only in memory. A stage's *current run* is the tail of its
history after the last entry that ended in a terminal status (COMPLETE, ERROR,
CANCELED): such an entry can only be followed by more attempts after an explicit reset
(``rollback`` or ``retry_failed``), and a reset is what gives a stage a fresh budget.
``attempts`` itself is never reset. Every entry carries its attempt's number, and runs
are counted by those numbers, not by entries.

Bounded by design: a stored message is at most ``MESSAGE_LIMIT`` characters, and a
history longer than ``HISTORY_LIMIT`` entries keeps its first entry, one summary entry
("compacted: ...") standing for the attempts in between, and the latest entries. The
summary's status and attempt number are those of the latest terminal entry it replaced
(if any), so the run boundaries, and with them every budget, stay exact.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError

from eleanor_cloud.clock import format_ts, parse_ts
from eleanor_cloud.errors import InvalidState, first_error
from eleanor_cloud.models import (
    CANCELABLE_STATES,
    BaseStageState,
    RetryPolicy,
    StageStateHistoryEntry,
    StageStatus,
)

__all__ = [
    "attempts_allowed",
    "cancel",
    "canceled_note",
    "check_result",
    "complete",
    "current_run",
    "entry",
    "fail",
    "global_used",
    "interrupted",
    "interrupted_entry",
    "may_attempt",
    "redrive",
    "reset",
    "start",
    "status_before",
    "strand",
]

S = TypeVar("S", bound="BaseStageState[Any]")
_TERMINAL = (StageStatus.COMPLETE, StageStatus.ERROR, StageStatus.CANCELED)
MESSAGE_LIMIT = 512  # characters of a stored history message
HISTORY_LIMIT = 50  # entries kept per stage: the first, a summary, the latest 48
COMPACTED = "compacted: "  # how a summary entry's message starts

# -- retry accounting -------------------------------------------------------------------


def current_run(state: BaseStageState[Any]) -> int:
    """Attempts of the stage's current run (see module docstring).

    A stage whose status is the terminal status its last entry recorded is still in
    that run, so its terminal entry counts too (a completed stage consumed its attempt).
    """
    history = state.history
    if not history:
        return 0
    end = len(history)
    if history[-1].end_status in _TERMINAL and state.status == history[-1].end_status:
        end -= 1  # the final entry belongs to this run; look for the boundary before it
    before = history[0].attempt - 1  # attempts before the first entry: none
    for index in range(end - 1, -1, -1):
        if history[index].end_status in _TERMINAL:
            before = history[index].attempt
            break
    return max(0, history[-1].attempt - before)


def global_used(states: Iterable[BaseStageState[Any]]) -> int:
    """Executions consumed from a GLOBAL budget: every attempt of every current run."""
    return sum(current_run(s) for s in states)


def attempts_allowed(policy: RetryPolicy, max_attempts: int) -> int:
    """Attempts one stage may make in one run under ``policy`` (GLOBAL: the task's)."""
    return 1 if policy is RetryPolicy.NONE else max_attempts


def may_attempt(
    policy: RetryPolicy,
    max_attempts: int,
    state: BaseStageState[Any],
    all_states: Iterable[BaseStageState[Any]],
) -> bool:
    """Whether ``state`` may start one more attempt now.

    NONE: only the first (a failure is final). STAGE: fewer than ``max_attempts`` in the
    stage's current run. GLOBAL: fewer than ``max_attempts`` executions across the task.
    """
    if policy is RetryPolicy.GLOBAL:
        return global_used(all_states) < max_attempts
    return current_run(state) < attempts_allowed(policy, max_attempts)


# -- history entries --------------------------------------------------------------------


def cap_message(message: str) -> str:
    """A message short enough to store: the head, and how much was left out."""
    if len(message) <= MESSAGE_LIMIT:
        return message
    cut = len(message) - (MESSAGE_LIMIT - 40)
    return f"{message[: MESSAGE_LIMIT - 40]}... [{cut} more characters not kept]"


def append(history: list[StageStateHistoryEntry], new: StageStateHistoryEntry) -> list[Any]:
    """``history + [new]``, compacted to at most ``HISTORY_LIMIT`` entries."""
    out = [*history, new]
    if len(out) <= HISTORY_LIMIT:
        return out
    keep = HISTORY_LIMIT - 2
    first, gone, kept = out[0], out[1 : len(out) - keep], out[len(out) - keep :]
    terminal = next((e for e in reversed(gone) if e.end_status in _TERMINAL), None)
    low, high = first.attempt + 1, gone[-1].attempt
    note = f" (the last ended {terminal.end_status.value})" if terminal else ""
    summary = StageStateHistoryEntry(
        attempt=terminal.attempt if terminal else high,
        begin_status=gone[0].begin_status,
        begin_ts=gone[0].begin_ts,
        end_status=terminal.end_status if terminal else StageStatus.RETRY,
        end_ts=gone[-1].end_ts,
        message=f"{COMPACTED}attempts {low}-{high} are not kept one by one{note}",
        run_time_seconds=sum(e.run_time_seconds for e in gone),
    )
    return [first, summary, *kept]


def entry(
    attempt: int,
    begin_status: StageStatus,
    begin: datetime,
    end_status: StageStatus,
    end: datetime,
    message: str,
) -> StageStateHistoryEntry:
    """One attempt's history entry; a clock that stepped back gives 0 s, never < 0."""
    return StageStateHistoryEntry(
        attempt=attempt,
        begin_status=begin_status,
        begin_ts=format_ts(begin),
        end_status=end_status,
        end_ts=format_ts(end),
        message=cap_message(message),
        run_time_seconds=max(0.0, (end - begin).total_seconds()),
    )


def interrupted_entry(
    state: BaseStageState[Any], *, began: str | None, now: str, end_status: StageStatus, detail: str
) -> StageStateHistoryEntry:
    """The history entry recording an attempt found RUNNING that nobody finished."""
    prior = status_before(state)
    begin = began or now
    seconds = max(0.0, (parse_ts(now) - parse_ts(begin)).total_seconds())
    return StageStateHistoryEntry(
        attempt=state.attempts,
        begin_status=prior,
        begin_ts=begin,
        end_status=end_status,
        end_ts=now,
        message=cap_message(f"interrupted: {detail}"),
        run_time_seconds=seconds,
    )


# -- status changes ---------------------------------------------------------------------


def status_before(state: BaseStageState[Any]) -> StageStatus:
    """The status a RUNNING stage had before its attempt began (it is not stored; the
    last entry says whether the stage was being retried or run afresh)."""
    last = state.history[-1].end_status if state.history else None
    return (
        StageStatus.RETRY if last in (StageStatus.RETRY, StageStatus.ERROR) else StageStatus.CREATED
    )


def start(state: S) -> S:
    """CREATED/RETRY -> RUNNING with ``attempts + 1``: persisted *before* the stage runs."""
    return state.model_copy(
        deep=True, update={"status": StageStatus.RUNNING, "attempts": state.attempts + 1}
    )


def fail(
    running: S,
    failed: StageStateHistoryEntry,
    policy: RetryPolicy,
    max_attempts: int,
    others: Iterable[BaseStageState[Any]],
) -> S:
    """A failed attempt: RETRY if the budget allows another attempt after it, else ERROR.

    ``others`` are the task's other stages (a GLOBAL budget counts them too). The
    entry's ``end_status`` is set to the outcome.
    """
    status = StageStatus.ERROR
    if policy is not RetryPolicy.NONE:
        probe = running.model_copy(
            update={"status": StageStatus.RETRY, "history": append(running.history, failed)}
        )
        if may_attempt(policy, max_attempts, probe, [*others, probe]):
            status = StageStatus.RETRY
    closed = failed.model_copy(update={"end_status": status})
    return running.model_copy(update={"status": status, "history": append(running.history, closed)})


def interrupted(
    state: S,
    *,
    began: str | None,
    now: str,
    detail: str,
    policy: RetryPolicy,
    max_attempts: int,
    others: Iterable[BaseStageState[Any]],
) -> S:
    """A RUNNING stage whose attempt ended without an outcome (crash, interrupt)."""
    lost = interrupted_entry(
        state, began=began, now=now, end_status=StageStatus.RETRY, detail=detail
    )
    return fail(state, lost, policy, max_attempts, others)


def complete(
    state_class: type[S],
    work: BaseStageState[Any],
    running: S,
    result: Any,
    done: StageStateHistoryEntry,
) -> S:
    """COMPLETE: the stage's own fields from ``work``, the engine's from ``running``.

    Validated, including the JSON round trip the store will make, so a bad value fails
    this attempt (``InvalidState``) instead of the whole run.
    """
    data = work.model_dump(warnings=False)
    data.update(
        task_id=running.task_id,
        stage_name=running.stage_name,
        status=StageStatus.COMPLETE,
        attempts=running.attempts,
        history=append(running.history, done),
        result=result,
    )
    where = running.stage_name
    try:
        final = state_class.model_validate(data)
        state_class.model_validate(final.model_dump(mode="json"))
    except ValidationError as exc:
        raise InvalidState(f"stage {where!r} left its state invalid: {first_error(exc)}") from exc
    except PydanticSerializationError as exc:
        raise InvalidState(f"stage {where!r} left its state not JSON-serializable: {exc}") from exc
    return final


def check_result(
    adapter: TypeAdapter[Any], state_class: type[Any], name: str, returned: Any, work: Any
) -> Any:
    """What a stage returned, validated against the state's result type (None: keep)."""
    if returned is None:
        return work.result
    try:
        return adapter.validate_python(returned)
    except ValidationError as exc:
        wanted = state_class.model_fields["result"].annotation
        raise InvalidState(
            f"stage {name!r} returned {type(returned).__name__}, but the result type of "
            f"{state_class.__name__} is {wanted!r}: {first_error(exc)}"
        ) from exc


def strand(state: S) -> S:
    """ERROR without an attempt: the budget was spent before the stage could start."""
    return state.model_copy(update={"status": StageStatus.ERROR})


def cancel(state: S | None, fresh: S) -> S | None:
    """CANCELED from any of CANCELABLE_STATES; ``None``: leave it (COMPLETE, ERROR, ...).

    A stage with no object yet is created CANCELED (``fresh`` is its default state).
    """
    if state is None:
        return fresh.model_copy(update={"status": StageStatus.CANCELED})
    if state.status not in CANCELABLE_STATES:
        return None
    return state.model_copy(update={"status": StageStatus.CANCELED})


def canceled_note(state: S, outcome: StageStateHistoryEntry) -> S | None:
    """The CANCELED state with the discarded attempt's entry appended (``None``: no need)."""
    recorded = bool(state.history) and state.history[-1].attempt >= state.attempts
    if state.status is not StageStatus.CANCELED or recorded:
        return None
    note = outcome.model_copy(
        update={
            "end_status": StageStatus.CANCELED,
            "message": cap_message(f"canceled while running; outcome discarded: {outcome.message}"),
        }
    )
    return state.model_copy(update={"history": append(state.history, note)})


def redrive(state: S | None) -> S | None:
    """ERROR -> RETRY: the ERROR entry closed the failed run, so the budget is fresh."""
    if state is None or state.status is not StageStatus.ERROR:
        return None
    return state.model_copy(update={"status": StageStatus.RETRY})


def reset(state: S, *, now: str, began: str | None) -> S | None:
    """Back to CREATED with the result cleared (rollback); ``None``: nothing to reset.

    A RUNNING stage (an attempt lost: the caller holds the lease) first gets its
    history entry. CREATED, UNBOUND and CANCELED stages are left alone. History and
    attempts are kept; the reset closes the stage's run, so it gets a fresh budget.
    """
    if state.status in (StageStatus.CREATED, StageStatus.UNBOUND, StageStatus.CANCELED):
        return None
    history = list(state.history)
    if state.status is StageStatus.RUNNING:
        lost = interrupted_entry(
            state,
            began=began,
            now=now,
            end_status=StageStatus.ERROR,
            detail="found RUNNING during rollback",
        )
        history = append(history, lost)
    return state.model_copy(
        update={"status": StageStatus.CREATED, "result": None, "history": history}
    )
