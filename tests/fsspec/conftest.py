"""Fixtures for the fsspec backend tests: Azurite and fake-gcs-server per session (the
moto server comes from the top-level conftest), and a fresh bucket/container per test.

An emulator that cannot start FAILS the tests that need it, with the reason: CI must
install and run every emulator (`make test` runs `npm ci` for Azurite).
"""

from __future__ import annotations

import os

# Before anything imports gcsfs (see tests/fsspec/helpers.py).
os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"

import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any, TypeVar

import pytest

from tests.fsspec import helpers
from tests.support.emulators import (
    AzuriteBlob,
    EmulatorError,
    azurite_blob,
    fake_gcs_server,
)

T = TypeVar("T")


def _started(manager: AbstractContextManager[T], name: str) -> Iterator[T]:
    try:
        value = manager.__enter__()
    except EmulatorError as exc:
        pytest.fail(f"{name} could not start (it is required, not optional): {exc}", pytrace=False)
    try:
        yield value
    finally:
        manager.__exit__(None, None, None)


@pytest.fixture(scope="session")
def azurite() -> Iterator[AzuriteBlob]:
    """Azurite's blob service on 127.0.0.1 for the session."""
    yield from _started(azurite_blob(), "Azurite")


@pytest.fixture(scope="session")
def fake_gcs_url() -> Iterator[str]:
    """fake-gcs-server on 127.0.0.1 for the session; yields its endpoint URL."""
    yield from _started(fake_gcs_server(), "fake-gcs-server")


@pytest.fixture
def gcs_bucket(fake_gcs_url: str) -> str:
    """A fresh, empty bucket on fake-gcs-server."""
    name = f"test-{uuid.uuid4().hex[:20]}"
    helpers.gcs_filesystem(fake_gcs_url).mkdir(name)
    return name


@pytest.fixture
def azure_container(azurite: AzuriteBlob) -> str:
    """A fresh, empty container on Azurite."""
    name = f"test-{uuid.uuid4().hex[:20]}"
    helpers.azure_filesystem(azurite.connection_string).mkdir(name)
    return name


@pytest.fixture
def memory_root() -> Iterator[str]:
    """A fresh directory in fsspec's process-wide memory filesystem, removed afterwards."""
    from fsspec.implementations.memory import MemoryFileSystem

    root = f"/eleanor-test-{uuid.uuid4().hex[:12]}"
    yield root
    fs: Any = MemoryFileSystem()
    for path in [p for p in fs.store if p.startswith(root + "/")]:
        fs.store.pop(path, None)
