"""Module-level helpers for the S3 tests (picklable, so subprocesses can use them)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from eleanor_cloud.backends.s3 import PROBE_NAME, ConditionsVerdict, S3Backend
from eleanor_cloud.backends.s3._probe import remember


def open_backend(bucket: str, endpoint_url: str) -> S3Backend:
    """A new backend (its own boto3 client) over the same bucket: one per process."""
    return S3Backend(bucket, endpoint_url=endpoint_url, region_name="us-east-1")


def assume_conditions_honoured(endpoint: str, bucket: str) -> None:
    """Hold the verdict moto earns (``test_probe.py`` proves it) for ``bucket`` at
    ``endpoint``, as a process that already probed would: no probe before the next write."""
    remember(ConditionsVerdict(endpoint, bucket, PROBE_NAME, True, True))


class RequestCounter:
    """Counts HTTP requests a boto3 client sends, by operation, via ``before-send``.

    ``before-send`` fires once per attempt on the wire, retries included.
    """

    def __init__(self, client: Any) -> None:
        self.calls: Counter[str] = Counter()
        client.meta.events.register("before-send.s3", self._on_send)

    def _on_send(self, request: Any, **_: Any) -> None:
        self.calls[f"{request.method}"] += 1

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    def clear(self) -> None:
        self.calls.clear()
