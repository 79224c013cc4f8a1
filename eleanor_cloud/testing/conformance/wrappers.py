"""Backend wrappers for tests: count the requests a store makes, or lose a write's answer."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from eleanor_cloud.backends.base import ObjectBackend, Version, WriteMode
from eleanor_cloud.errors import Unavailable

__all__ = ["AmbiguousWriteBackend", "CountingBackend"]


class CountingBackend:
    """Wraps a backend and counts calls per operation (one call = one request on S3)."""

    def __init__(self, inner: ObjectBackend) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    @property
    def description(self) -> str:
        return self.inner.description

    def read(self, key: str) -> tuple[bytes, Version]:
        self.calls["read"] += 1
        return self.inner.read(key)

    def write(self, key: str, data: bytes, mode: WriteMode) -> Version:
        self.calls["write"] += 1
        return self.inner.write(key, data, mode)

    def delete(self, key: str, if_version: Version | None = None) -> None:
        self.calls["delete"] += 1
        self.inner.delete(key, if_version)

    def list(self, prefix: str, delimiter: str | None = None) -> Iterator[str]:
        self.calls["list"] += 1
        return self.inner.list(prefix, delimiter)


class AmbiguousWriteBackend(CountingBackend):
    """Applies the next write, then behaves as if its response was lost.

    ``how="retry"``: like botocore, re-send the same conditional write, which now fails
    its precondition (the first attempt changed the object). ``how="raise"``: give up
    with ``Unavailable`` as a client whose retries ran out would.
    """

    def __init__(self, inner: ObjectBackend, how: str = "retry") -> None:
        super().__init__(inner)
        self.how = how
        self.armed = False

    def write(self, key: str, data: bytes, mode: WriteMode) -> Version:
        if not self.armed:
            return super().write(key, data, mode)
        self.armed = False
        super().write(key, data, mode)  # applied; the answer never arrives
        if self.how == "retry":
            return super().write(key, data, mode)
        raise Unavailable(
            f"{self.description}: connection lost after sending {key!r}",
            key=key,
            operation=str(mode),
        )
