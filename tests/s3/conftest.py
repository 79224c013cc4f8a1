"""Fixtures for the S3 backend tests: moto in-process and moto over HTTP, a fresh bucket
per test, and the fault-injecting proxy in front of the HTTP server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from eleanor_cloud.backends.s3 import S3Backend
from tests.support.proxy import FaultProxy


@pytest.fixture
def proxy(moto_server_url: str) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of the session's moto server, for one test."""
    with FaultProxy(moto_server_url) as running:
        yield running


@pytest.fixture
def server_backend(moto_server_url: str, s3_bucket: str) -> S3Backend:
    """An S3Backend on a fresh bucket of the moto HTTP server."""
    return S3Backend(s3_bucket, endpoint_url=moto_server_url, region_name="us-east-1")
