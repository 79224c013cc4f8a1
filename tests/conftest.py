"""Shared fixtures. Fake AWS credentials are set before anything imports boto3, so no
test can ever reach a real account (there is no network here anyway)."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

for _name, _value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}.items():
    os.environ[_name] = _value
os.environ.pop("AWS_PROFILE", None)
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.pop("AWS_ENDPOINT_URL_S3", None)


@pytest.fixture(scope="session", autouse=True)
def atomic_moto() -> Iterator[None]:
    """Make moto's object requests atomic, as each request is on real S3.

    moto checks If-Match / If-None-Match in one step and stores the object in another,
    and overwriting a key closes the old value's buffer under a concurrent GET
    ("I/O operation on closed file"). Both are emulator races, not S3 behaviour, and
    would make every race test flaky for the wrong reason. One lock around moto's
    per-object handler (after the request body is read) covers moto in-process and the
    HTTP server, which runs in this process. Our own code gets no such help: the
    races still run between our clients, over HTTP where the test says so.
    """
    from moto.s3.responses import S3Response

    lock = threading.Lock()
    handle = S3Response._key_response

    def atomic(self: S3Response, request: Any, full_url: str) -> Any:
        with lock:
            return handle(self, request, full_url)

    S3Response._key_response = atomic  # type: ignore[method-assign]
    try:
        yield
    finally:
        S3Response._key_response = handle  # type: ignore[method-assign]


@pytest.fixture(scope="session")
def moto_server_url() -> Iterator[str]:
    """One moto HTTP server (127.0.0.1, free port) for the whole test session."""
    from tests.support.servers import moto_server

    with moto_server() as url:
        yield url


@pytest.fixture
def s3_client(moto_server_url: str) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=moto_server_url, region_name="us-east-1")


@pytest.fixture
def s3_bucket(s3_client: Any) -> str:
    """A fresh, empty bucket on the moto server for each test."""
    name = f"test-{uuid.uuid4().hex[:20]}"
    s3_client.create_bucket(Bucket=name)
    return name
