"""A process-wide cache of conditions-probe verdicts, one per endpoint and bucket.

Shared by the boto3 and obstore backends' probes (kept apart from both so that neither
imports the other's SDK). Module-level state on purpose: a verdict is a fact about an
endpoint (it evaluates conditional headers or it does not), not a version of any
object, so every backend on that endpoint and bucket may share it, and a new backend per
Lambda invocation does not pay the probe again. A probe that fails caches nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

__all__ = ["VerdictCache"]


class _Verdict(Protocol):
    @property
    def endpoint(self) -> str: ...

    @property
    def bucket(self) -> str: ...


V = TypeVar("V", bound=_Verdict)


class VerdictCache(Generic[V]):
    """Verdicts by (endpoint, bucket); concurrent first writes wait for one probe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._verdicts: dict[tuple[str, str], V] = {}
        # One gate per endpoint and bucket: concurrent first writes wait for one probe
        # instead of each sending their own, and probes of other buckets do not wait.
        self._gates: dict[tuple[str, str], threading.Lock] = {}

    def get(self, endpoint: str, bucket: str) -> V | None:
        """The verdict this process holds for ``endpoint`` and ``bucket``, if any."""
        with self._lock:
            return self._verdicts.get((endpoint, bucket))

    def remember(self, verdict: V) -> None:
        """Hold ``verdict`` for its endpoint and bucket (replacing an earlier one)."""
        with self._lock:
            self._verdicts[(verdict.endpoint, verdict.bucket)] = verdict

    def verdict_for(self, endpoint: str, bucket: str, probe: Callable[[], V]) -> V:
        """The cached verdict, or ``probe()``'s (run once however many threads ask)."""
        with self._lock:
            found = self._verdicts.get((endpoint, bucket))
            if found is not None:
                return found
            gate = self._gates.setdefault((endpoint, bucket), threading.Lock())
        with gate:
            found = self.get(endpoint, bucket)
            if found is not None:
                return found  # another thread probed while this one waited
            verdict = probe()
            self.remember(verdict)
            return verdict

    def clear(self) -> None:
        """Forget every verdict (tests; or after an endpoint was reconfigured)."""
        with self._lock:
            self._verdicts.clear()
            self._gates.clear()
