"""Exponential backoff with jitter between attempts of one stage (pure, no I/O)."""

from __future__ import annotations

import math
import random as _random
from collections.abc import Callable
from dataclasses import dataclass, field

from eleanor_cloud.errors import InvalidState

__all__ = ["Backoff"]


def _finite(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidState(f"Backoff.{name} must be a finite number, got {value!r}")


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter between attempts of one stage.

    The n-th retry (n >= 1) waits ``min(max_delay, initial * multiplier ** (n - 1))``
    reduced by a random fraction of up to ``jitter`` (0 = no jitter, 1 = "full
    jitter"), so hosts that failed together do not retry together. ``random`` returns
    floats in [0, 1) and is injectable for tests. Defined for every ``n``: the exponent
    stops growing once the delay reaches ``max_delay`` (a float power overflows past
    about the 1025th retry otherwise, which would strand a task for good).
    """

    initial: float = 1.0
    multiplier: float = 2.0
    max_delay: float = 60.0
    jitter: float = 0.5
    random: Callable[[], float] = field(default=_random.random, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("initial", "multiplier", "max_delay", "jitter"):
            _finite(name, getattr(self, name))
        if self.initial < 0:
            raise InvalidState(f"Backoff.initial must be >= 0, got {self.initial}")
        if self.multiplier < 1:
            raise InvalidState(f"Backoff.multiplier must be >= 1, got {self.multiplier}")
        if self.max_delay < 0:
            raise InvalidState(f"Backoff.max_delay must be >= 0, got {self.max_delay}")
        if not 0 <= self.jitter <= 1:
            raise InvalidState(f"Backoff.jitter must be within [0, 1], got {self.jitter}")

    def base(self, retry: int) -> float:
        """The delay before jitter for the ``retry``-th retry (1-based); 0 before the first."""
        if retry < 1 or self.initial == 0:
            return 0.0
        if self.multiplier == 1 or self.initial >= self.max_delay:
            return min(self.max_delay, self.initial)
        # The smallest exponent at which the cap is reached, in log space (the ratio
        # itself may overflow): the power is never raised past it.
        cap = math.ceil(
            (math.log(self.max_delay) - math.log(self.initial)) / math.log(self.multiplier)
        )
        exponent = min(retry - 1, max(cap, 0))
        try:
            return min(self.max_delay, self.initial * self.multiplier**exponent)
        except OverflowError:
            return self.max_delay

    def delay(self, retry: int) -> float:
        """Seconds to wait before the ``retry``-th retry (1-based)."""
        base = self.base(retry)
        return base * (1.0 - self.jitter * self.random()) if base else 0.0
