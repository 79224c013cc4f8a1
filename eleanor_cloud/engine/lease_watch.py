"""How long a challenger has seen a lease stand still: the whole basis of a takeover.

No other host's clock is trusted: a lease counts as abandoned only once this process
(or a chain of invocations whose waits are known, see :class:`LeaseWatch`) has seen it
stay at one version for its TTL plus the skew tolerance. Pure: callers pass the times.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from eleanor_cloud.clock import parse_ts
from eleanor_cloud.errors import InvalidState
from eleanor_cloud.store.records import Lease

__all__ = ["LeaseWatch", "Watcher", "is_expired"]


@dataclass(frozen=True)
class LeaseWatch:
    """A watch to carry across invocations: the lease stood at ``version`` for at least
    ``seconds``.

    A Lambda invocation that must not outlive its deadline returns this (in
    ``LeaseHeld.watch``); the state machine waits and passes it to the next invocation
    with the wait added (``plus(wait)``), which credits it if the lease still stands at
    that version. The wait is a lower bound the orchestrator guarantees, so no clock is
    compared across hosts.
    """

    version: str
    seconds: float

    def __post_init__(self) -> None:
        if not isinstance(self.version, str) or not self.version:
            raise InvalidState(
                f"LeaseWatch.version must be a non-empty string, got {self.version!r}"
            )
        if (
            isinstance(self.seconds, bool)
            or not isinstance(self.seconds, int | float)
            or not (self.seconds >= 0)
        ):
            raise InvalidState(f"LeaseWatch.seconds must be >= 0, got {self.seconds!r}")

    def plus(self, seconds: float) -> LeaseWatch:
        """The same watch after ``seconds`` more of known waiting."""
        return LeaseWatch(self.version, self.seconds + max(0.0, float(seconds)))

    def to_dict(self) -> dict[str, object]:
        return {"version": self.version, "seconds": round(self.seconds, 3)}

    @classmethod
    def from_dict(cls, data: object) -> LeaseWatch:
        if not isinstance(data, dict):
            raise InvalidState(f"lease_watch must be an object, got {data!r}")
        return cls(data.get("version"), data.get("seconds"))  # type: ignore[arg-type]


class Watcher:
    """Seconds a lease has stood at one version, on this process's monotonic clock."""

    def __init__(self, prior: LeaseWatch | None = None) -> None:
        self._prior = prior
        self._first: tuple[str, float] | None = None  # (version, first seen)

    def observe(self, version: str, asked: float, seen: float) -> float:
        """Record a read sent at ``asked`` that returned ``version`` (answered at ``seen``).

        Measured conservatively, from just after the read that first returned this
        version to just before the read that returned it again: the lease certainly did
        not move in between, whatever the request latencies. A prior watch of the same
        version counts as time already watched.
        """
        if self._first is None or self._first[0] != version:
            credit = 0.0
            if self._prior is not None and self._prior.version == version:
                credit = self._prior.seconds
            self._prior = None
            self._first = (version, seen - credit)
            return credit
        return max(0.0, asked - self._first[1])

    def snapshot(self, now: float) -> LeaseWatch | None:
        """What to carry to the next invocation, or ``None`` before the first read."""
        if self._first is None:
            return None
        return LeaseWatch(self._first[0], max(0.0, now - self._first[1]))


def is_expired(lease: Lease, now: datetime, skew: float) -> bool:
    """Whether ``lease`` looks past its expiry plus ``skew`` by the clock that read ``now``.

    Decides only how long to watch, never whether to take over: the holder's clock may
    be hours off.
    """
    return now > parse_ts(lease.expires_at) + timedelta(seconds=skew)
