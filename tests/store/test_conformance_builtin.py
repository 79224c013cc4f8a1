"""The shipped conformance suite against the built-in memory and local backends."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from eleanor_cloud.backends.base import ObjectBackend
from eleanor_cloud.backends.local import LocalBackend
from eleanor_cloud.backends.memory import MemoryBackend
from eleanor_cloud.testing.conformance import BackendConformance, BackendFactory


def _local(root: Path) -> LocalBackend:
    return LocalBackend(root)


class TestMemoryBackend(BackendConformance):
    # One process's memory: there is no second process to race with.
    test_create_race_processes_one_winner = None
    test_cas_race_processes_no_lost_update = None

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
