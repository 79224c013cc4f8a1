"""Fixtures for the S3 backend tests: moto in-process and moto over HTTP, a fresh bucket
per test, and the fault-injecting proxy in front of the HTTP server.

Every test starts with an empty conditional-write probe cache and, for its bucket on
the moto server (directly and through ``proxy``), the verdict moto earns: conditions
honoured. ``test_probe.py`` proves that verdict with real probes on both peers; starting
from it here is what a process that already probed holds, so each test's request counts
and injected faults are about the operation under test, not the once-per-process probe.
A test that wants the probe to run asks for ``cold_probe_cache``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from eleanor_cloud.backends.s3 import S3Backend, clear_probe_cache
from tests.s3.helpers import assume_conditions_honoured
from tests.support.proxy import FaultProxy


@pytest.fixture
def proxy(moto_server_url: str) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of the session's moto server, for one test."""
    with FaultProxy(moto_server_url) as running:
        yield running


@pytest.fixture
def cold_probe_cache() -> None:
    """Ask for this to start with no verdict at all: the first conditional write probes."""
    clear_probe_cache()


@pytest.fixture(autouse=True)
def _conditions_known(request: pytest.FixtureRequest) -> Iterator[None]:
    clear_probe_cache()
    if "s3_bucket" in request.fixturenames and "cold_probe_cache" not in request.fixturenames:
        bucket = request.getfixturevalue("s3_bucket")
        assume_conditions_honoured(request.getfixturevalue("moto_server_url"), bucket)
        if "proxy" in request.fixturenames:
            assume_conditions_honoured(request.getfixturevalue("proxy").url, bucket)
    yield
    clear_probe_cache()


@pytest.fixture
def server_backend(moto_server_url: str, s3_bucket: str) -> S3Backend:
    """An S3Backend on a fresh bucket of the moto HTTP server."""
    return S3Backend(s3_bucket, endpoint_url=moto_server_url, region_name="us-east-1")
