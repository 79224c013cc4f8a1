"""The shipped conformance suite against the built-in memory and local backends, and
against a backend without conditional delete (the optional part of the contract)."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from eleanor_cloud.backends.base import ObjectBackend, Version
from eleanor_cloud.backends.local import LocalBackend
from eleanor_cloud.backends.memory import MemoryBackend
from eleanor_cloud.errors import NotSupported
from eleanor_cloud.testing.conformance import BackendConformance, BackendFactory


def _local(root: Path) -> LocalBackend:
    return LocalBackend(root)


class TestMemoryBackend(BackendConformance):
    shared_across_processes = False  # one process's memory

    @pytest.fixture
    def backend(self) -> ObjectBackend:
        return MemoryBackend("conformance")


class TestLocalBackend(BackendConformance):
    @pytest.fixture
    def backend(self, tmp_path: Path) -> ObjectBackend:
        return LocalBackend(tmp_path / "store")

    @pytest.fixture
    def backend_factory(self, tmp_path: Path) -> BackendFactory:
        return functools.partial(_local, tmp_path / "store")


class _NoConditionalDelete(MemoryBackend):
    """A store like obstore's: deletes are unconditional only."""

    def delete(self, key: str, if_version: Version | None = None) -> None:
        if if_version is not None:
            raise NotSupported("conditional delete", self.description)
        super().delete(key)


class TestBackendWithoutConditionalDelete(BackendConformance):
    """The library never deletes conditionally: such a backend passes the whole suite."""

    supports_conditional_delete = False
    shared_across_processes = False

    @pytest.fixture
    def backend(self) -> ObjectBackend:
        return _NoConditionalDelete("no-conditional-delete")


def test_a_frozen_lock_holder_makes_local_writes_unavailable_not_stuck(tmp_path: Path) -> None:
    """A process frozen while holding an object's lock: another writer gives up after
    lock_timeout with Unavailable instead of waiting forever (found by reliability
    scenario 10: a successor's fence write waited for a SIGSTOPped holder)."""
    import fcntl
    import os

    from eleanor_cloud.backends.base import CREATE, Replace
    from eleanor_cloud.errors import Unavailable

    backend = LocalBackend(tmp_path, fsync=False, lock_timeout=0.2)
    version = backend.write("t/s.json", b"one", CREATE)
    lock_path = backend._lock_path(backend._path("t/s.json"))
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # the "frozen" holder
        with pytest.raises(Unavailable, match="held by another process"):
            backend.write("t/s.json", b"two", Replace(version))
    finally:
        os.close(fd)
    assert backend.write("t/s.json", b"two", Replace(version)) != version  # free again
