"""Module-level helpers for the S3 tests (picklable, so subprocesses can use them)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from eleanor_cloud.backends.s3 import S3Backend


def open_backend(bucket: str, endpoint_url: str) -> S3Backend:
    """A new backend (its own boto3 client) over the same bucket: one per process."""
    return S3Backend(bucket, endpoint_url=endpoint_url, region_name="us-east-1")


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
