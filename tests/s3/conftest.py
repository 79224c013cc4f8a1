"""Fixtures for the S3 backend tests: moto in-process and moto over HTTP, a fresh bucket
per test, and the fault-injecting proxy in front of the HTTP server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from eleanor_cloud.backends.s3 import S3Backend
from tests.support.proxy import FaultProxy


@pytest.fixture(autouse=True)
def atomic_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make moto's object requests atomic, as each request is on real S3.

    moto checks If-Match / If-None-Match in one step and stores the object in another,
    and overwriting a key closes the old value's buffer under a concurrent GET
    ("I/O operation on closed file"). Both are emulator races, not S3 behaviour, and
    would make the race tests flaky for the wrong reason. One lock around moto's
    per-object handler (after the request body is read) covers moto in-process and the
    HTTP server, which runs in this process; it is undone after each test.
    """
    from moto.s3.responses import S3Response

    lock = threading.Lock()
    handle = S3Response._key_response

    def atomic(self: S3Response, request: Any, full_url: str) -> Any:
        with lock:
            return handle(self, request, full_url)

    monkeypatch.setattr(S3Response, "_key_response", atomic)


@pytest.fixture
def proxy(moto_server_url: str) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of the session's moto server, for one test."""
    with FaultProxy(moto_server_url) as running:
        yield running


@pytest.fixture
def server_backend(moto_server_url: str, s3_bucket: str) -> S3Backend:
    """An S3Backend on a fresh bucket of the moto HTTP server."""
    return S3Backend(s3_bucket, endpoint_url=moto_server_url, region_name="us-east-1")
