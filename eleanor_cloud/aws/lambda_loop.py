"""The state machine loop's protocol: what an event carries into an invocation, how
long the loop waits when another holder has the lease, and whether an invocation made
any progress (:class:`InvocationProgress`, from the engine's events: looping after an
invocation that made none would never end).

An event is the caller's object with a string ``task_id``. The task-loop state
machine merges two more keys into every invocation's event after the first
(``infra/statemachine/task-loop.asl.json``):

- ``lease_watch``: the previous response's ``lease_watch``, ``null`` or
  ``{"version": str, "seconds": number}``: that invocation saw the task's lease stand
  at ``version`` for ``seconds`` without being renewed or released;
- ``lease_waited_seconds``: the previous response's ``wait_seconds``, which the Wait
  state waited before this invocation.

The handler credits the watch with the wait (``LeaseWatch.plus``) and the engine counts
it if the lease still stands at that version, so a chain of invocations each shorter
than the lease's TTL + skew tolerance can take a dead holder's lease over. No clock is
compared across hosts: each invocation measures on its own monotonic clock, and the
wait is a lower bound the Wait state guarantees. Both keys are removed before the
event reaches ``build_engine``.

Whoever can invoke the function can claim a long watch and so cause an early takeover;
the fence still keeps that safe (the old holder's next write fails), as with
``eleanor-cloud lease --break``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eleanor_cloud.clock import Clock, parse_ts
from eleanor_cloud.errors import InvalidState, LeaseHeld
from eleanor_cloud.keys import validate_task_id

if TYPE_CHECKING:
    from eleanor_cloud.engine.events import EngineEvent
    from eleanor_cloud.engine.lease_watch import LeaseWatch

__all__ = [
    "LOOP_KEYS",
    "MAX_LEASE_WAIT",
    "VERSION_MAX_CHARS",
    "WAITED_KEY",
    "WATCH_KEY",
    "InvalidEvent",
    "InvocationProgress",
    "LoopEvent",
    "held_lease_wait",
    "parse_event",
]

WATCH_KEY = "lease_watch"
WAITED_KEY = "lease_waited_seconds"
LOOP_KEYS = (WATCH_KEY, WAITED_KEY)
# Waiting for another invocation's lease is bounded so a long TTL never parks the
# state machine for long without looking again (a live holder may release early).
MAX_LEASE_WAIT = 300
# Version tokens are ETags, generations or counters: a few dozen characters. The bound
# keeps a hostile or corrupted event from growing every later event and response.
VERSION_MAX_CHARS = 1024
# When a held lease says nothing about how long to wait (a LeaseHeld without a watch
# or an expiry: lost races), look again soon.
_UNKNOWN_WAIT = 5


class InvalidEvent(InvalidState):
    """The event is not what the handler accepts: not an object with a string
    ``task_id``, or a malformed ``lease_watch`` / ``lease_waited_seconds``.

    Retrying the same event cannot help; the state machine fails the execution.
    """


@dataclass(frozen=True)
class LoopEvent:
    """An event, read: the task, the caller's own keys, and the watch to credit."""

    task_id: str
    event: Mapping[str, Any]  # what build_engine receives: the event minus LOOP_KEYS
    lease_watch: LeaseWatch | None  # already credited with lease_waited_seconds


class InvocationProgress:
    """What the engine's events say this invocation got done.

    ``ran``: the stages started or resumed, in order (the response's ``stages_run``).
    ``stuck``: nothing was started and no attempt ended (a join ends one without a
    start), or the one stage that ran is a records stage whose slice suspended before
    its first batch (``stage_suspended`` with ``batches == 0``) and no attempt ended:
    then the invocation made no progress at all.
    """

    _ENDINGS = frozenset(
        {"stage_completed", "stage_retry", "stage_failed", "stage_canceled", "stage_interrupted"}
    )

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.empty_slice: str | None = None  # the stage suspended before any batch
        self.progressed = False  # an attempt ended, or a slice got through a batch

    def note(self, ev: EngineEvent) -> None:
        if ev.stage_name is None:
            return
        if ev.kind in ("stage_started", "stage_resumed"):
            self.ran.append(ev.stage_name)
        elif ev.kind == "stage_suspended":
            if ev.batches == 0:
                self.empty_slice = ev.stage_name
            else:
                self.progressed = True
        elif ev.kind in self._ENDINGS:
            self.progressed = True

    @property
    def stuck(self) -> bool:
        if not self.ran:
            # Nothing started; an attempt may still have ended (a fanned-out stage's
            # join completes it without starting anything).
            return not self.progressed
        return self.empty_slice is not None and not self.progressed


def _seconds(value: object) -> float | None:
    """``value`` as finite, non-negative seconds, or ``None`` if it is not that."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    seconds = float(value)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _watch(raw: object) -> tuple[str, float]:
    expected = (
        f'{WATCH_KEY} must be null or {{"version": "<non-empty string>", "seconds": '
        "<finite number >= 0>}, as a previous response returned it"
    )
    if not isinstance(raw, Mapping):
        raise InvalidEvent(f"{expected}; got {raw!r:.200}")
    version, seconds = raw.get("version"), _seconds(raw.get("seconds"))
    if not isinstance(version, str) or not version or len(version) > VERSION_MAX_CHARS:
        raise InvalidEvent(f"{expected}; its version is {version!r:.200}")
    if seconds is None:
        raise InvalidEvent(f"{expected}; its seconds are {raw.get('seconds')!r:.200}")
    return version, seconds


def parse_event(event: object) -> LoopEvent:
    """Read and check an event before any work; ``InvalidEvent`` names what is wrong."""
    if not isinstance(event, Mapping) or not isinstance(event.get("task_id"), str):
        raise InvalidEvent(f"the event must be an object with a string task_id, got {event!r:.200}")
    task_id = validate_task_id(event["task_id"])
    raw_watch, raw_waited = event.get(WATCH_KEY), event.get(WAITED_KEY)
    waited = 0.0 if raw_waited is None else _seconds(raw_waited)
    if waited is None:
        raise InvalidEvent(
            f"{WAITED_KEY} must be null or a finite number of seconds >= 0 (the wait the "
            f"state machine performed), got {raw_waited!r:.200}"
        )
    watch: LeaseWatch | None = None
    if raw_watch is not None:
        version, seconds = _watch(raw_watch)
        # Imported here: importing the handler module must not load the engine.
        from eleanor_cloud.engine.lease_watch import LeaseWatch

        watch = LeaseWatch(version, seconds).plus(waited)
    rest = {k: v for k, v in event.items() if k not in LOOP_KEYS}
    return LoopEvent(task_id=task_id, event=rest, lease_watch=watch)


def held_lease_wait(
    held: LeaseHeld, *, clock: Clock, skew: float, max_wait: int
) -> tuple[int, dict[str, Any] | None]:
    """``(wait_seconds, lease_watch)`` for a response after ``LeaseHeld``.

    With a watch: wait until the watch would reach the ``needed_seconds`` after which
    the lease counts as abandoned (the next invocation then takes it over at its first
    read if nothing moved), at most ``max_wait``. The watch is reported rounded *down*
    to milliseconds and the wait rounded up, so watch + wait never claims more than was
    seen and waited. Without one (lost races): until the lease's expiry by this clock.
    """
    from eleanor_cloud.engine.lease_watch import LeaseWatch

    watch, needed = held.watch, held.needed_seconds
    if isinstance(watch, LeaseWatch) and needed is not None:
        seconds = math.floor(watch.seconds * 1000) / 1000
        field = (
            {"version": watch.version, "seconds": seconds}
            if len(watch.version) <= VERSION_MAX_CHARS
            else None
        )
        left = float(needed) - (seconds if field is not None else 0.0)
    elif held.expires_at is not None:
        field = None
        left = (parse_ts(held.expires_at) - clock()).total_seconds() + skew
    else:
        return min(max_wait, _UNKNOWN_WAIT), None
    return max(1, min(max_wait, math.ceil(left))), field
