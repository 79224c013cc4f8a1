"""Fixtures for the obstore backend tests: Azurite and fake-gcs-server per session (the
moto server comes from the top-level conftest), a fresh bucket or container per test,
and an empty conditional-write probe cache around every test.

An emulator that cannot start FAILS the tests that need it, with the reason: CI must
install and run every emulator (`make test` runs `npm ci` for Azurite).
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from eleanor_cloud.backends.obstore import clear_probe_cache
from tests.obstore.gcs_shim import GcsXmlShim
from tests.support.emulators import (
    AzuriteBlob,
    EmulatorError,
    _http_answers,
    _process,
    azurite_blob,
    fake_gcs_binary,
)
from tests.support.proxy import FaultProxy
from tests.support.servers import free_port


@pytest.fixture(autouse=True)
def _fresh_probe_cache() -> Iterator[None]:
    clear_probe_cache()
    yield
    clear_probe_cache()


@contextmanager
def _fake_gcs_xml() -> Iterator[str]:
    """fake-gcs-server answering its XML API too: obstore speaks the XML API (PUT and GET
    ``/<bucket>/<object>``, ``GET /<bucket>?list-type=2``), which fake-gcs-server only
    routes for requests whose Host is its ``-public-host``."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        str(fake_gcs_binary()),
        *("-scheme", "http", "-backend", "memory", "-host", "127.0.0.1"),
        *("-port", str(port), "-external-url", url, "-public-host", f"127.0.0.1:{port}"),
        *("-log-level", "error"),
    ]
    with _process("fake-gcs-server", argv, _http_answers(f"{url}/storage/v1/b")):
        yield url


def _started(name: str, manager: object) -> Iterator[object]:
    try:
        value = manager.__enter__()  # type: ignore[attr-defined]
    except EmulatorError as exc:
        pytest.fail(f"{name} could not start (it is required, not optional): {exc}", pytrace=False)
    try:
        yield value
    finally:
        manager.__exit__(None, None, None)  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def azurite() -> Iterator[AzuriteBlob]:
    """Azurite's blob service on 127.0.0.1 for the session."""
    yield from _started("Azurite", azurite_blob())  # type: ignore[misc]


@pytest.fixture
def azure_container(azurite: AzuriteBlob) -> str:
    """A fresh, empty container on Azurite."""
    from azure.storage.blob import BlobServiceClient

    name = f"test-{uuid.uuid4().hex[:20]}"
    BlobServiceClient.from_connection_string(azurite.connection_string).create_container(name)
    return name


@pytest.fixture(scope="session")
def fake_gcs_url() -> Iterator[str]:
    """fake-gcs-server (JSON and XML APIs) on 127.0.0.1 for the session."""
    yield from _started("fake-gcs-server", _fake_gcs_xml())  # type: ignore[misc]


@pytest.fixture(scope="session")
def gcs_shim_url(fake_gcs_url: str) -> Iterator[str]:
    """fake-gcs-server behind the XML-to-JSON upload shim (see ``gcs_shim.py``)."""
    with GcsXmlShim(fake_gcs_url) as shim:
        yield shim.url


@pytest.fixture
def gcs_bucket(fake_gcs_url: str) -> str:
    """A fresh, empty bucket on fake-gcs-server (made through its JSON API)."""
    name = f"test-{uuid.uuid4().hex[:20]}"
    request = urllib.request.Request(
        f"{fake_gcs_url}/storage/v1/b",
        data=json.dumps({"name": name}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10):
        pass
    return name


@pytest.fixture
def proxy(moto_server_url: str) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of the session's moto server, for one test."""
    with FaultProxy(moto_server_url) as running:
        yield running
