"""Engine test fixtures: counting backend, fake clock and sleep, memory + local stores."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from eleanor_cloud.backends.base import ObjectBackend, Version, WriteMode
from eleanor_cloud.backends.local import LocalBackend
from eleanor_cloud.backends.memory import MemoryBackend
from eleanor_cloud.store import StateStore


class CountingBackend:
    """Counts calls per operation: each maps 1:1 to an S3 request."""

    def __init__(self, inner: ObjectBackend) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()
        self.log: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def _count(self, op: str, key: str) -> None:
        with self._lock:
            self.calls[op] += 1
            self.log.append((op, key))

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.log.clear()

    @property
    def description(self) -> str:
        return self.inner.description

    def read(self, key: str) -> tuple[bytes, Version]:
        self._count("read", key)
        return self.inner.read(key)

    def write(self, key: str, data: bytes, mode: WriteMode) -> Version:
        self._count("write", key)
        return self.inner.write(key, data, mode)

    def delete(self, key: str, if_version: Version | None = None) -> None:
        self._count("delete", key)
        self.inner.delete(key, if_version)

    def list(self, prefix: str, delimiter: str | None = None) -> Iterator[str]:
        self._count("list", prefix)
        return iter(list(self.inner.list(prefix, delimiter)))


class FakeClock:
    """A settable UTC clock; ``sleep`` advances it and records the requested delays."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += timedelta(seconds=seconds)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "local"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> CountingBackend:
    inner: ObjectBackend
    if request.param == "memory":
        inner = MemoryBackend("engine-test")
    else:
        inner = LocalBackend(tmp_path / "store", fsync=False)
    return CountingBackend(inner)


@pytest.fixture
def store(backend: CountingBackend, clock: FakeClock) -> StateStore:
    return StateStore(backend, "pfx", clock=clock)
