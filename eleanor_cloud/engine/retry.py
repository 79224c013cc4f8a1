"""Retry accounting and backoff.

Budgets are derived from the persisted history alone, so they survive crashes and
hosts: no counter lives only in memory.

A stage's *current run* is the tail of its history after the last entry that ended in
a terminal status (COMPLETE, ERROR, CANCELED) — such an entry can only be followed by
more attempts after an explicit reset (``rollback`` or ``retry_failed``), and a reset
is what gives a stage a fresh budget. ``attempts`` itself is never reset, so
``attempts == len(history)`` holds at all times after an attempt finished.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from eleanor_cloud.errors import InvalidState
from eleanor_cloud.models import BaseStageState, RetryPolicy, StageStatus

__all__ = ["Backoff", "attempts_allowed", "current_run", "global_used", "may_attempt"]

_TERMINAL = (StageStatus.COMPLETE, StageStatus.ERROR, StageStatus.CANCELED)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter between attempts of one stage.

    The n-th retry (n >= 1) waits ``min(max_delay, initial * multiplier ** (n - 1))``
    reduced by a random fraction of up to ``jitter`` (0 = no jitter, 1 = "full
    jitter"), so hosts that failed together do not retry together. ``random`` returns
    floats in [0, 1) and is injectable for tests.
    """

    initial: float = 1.0
    multiplier: float = 2.0
    max_delay: float = 60.0
    jitter: float = 0.5
    random: Callable[[], float] = field(default=_random.random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.initial < 0:
            raise InvalidState(f"Backoff.initial must be >= 0, got {self.initial}")
        if self.multiplier < 1:
            raise InvalidState(f"Backoff.multiplier must be >= 1, got {self.multiplier}")
        if self.max_delay < 0:
            raise InvalidState(f"Backoff.max_delay must be >= 0, got {self.max_delay}")
        if not 0 <= self.jitter <= 1:
            raise InvalidState(f"Backoff.jitter must be within [0, 1], got {self.jitter}")

    def delay(self, retry: int) -> float:
        """Seconds to wait before the ``retry``-th retry (1-based)."""
        if retry < 1:
            return 0.0
        base = min(self.max_delay, self.initial * self.multiplier ** (retry - 1))
        return base * (1.0 - self.jitter * self.random())


def current_run(state: BaseStageState[Any]) -> int:
    """Attempts of the stage's current run (see module docstring).

    A stage whose status is the terminal status its last entry recorded is still in
    that run, so its terminal entry counts too (a completed stage consumed its attempt).
    """
    history = state.history
    end = len(history)
    if end and history[-1].end_status in _TERMINAL and state.status == history[-1].end_status:
        end -= 1  # the final entry belongs to this run; look for the boundary before it
    start = 0
    for index in range(end - 1, -1, -1):
        if history[index].end_status in _TERMINAL:
            start = index + 1
            break
    return len(history) - start


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
