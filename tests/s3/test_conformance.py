"""The shipped backend conformance suite against S3Backend on two real moto peers:
in-process (``mock_aws``) and the moto HTTP server (separate processes race there)."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator

import pytest

from eleanor_cloud.backends.base import ObjectBackend
from eleanor_cloud.backends.s3 import S3Backend
from eleanor_cloud.testing.conformance import BackendConformance, BackendFactory
from tests.s3.helpers import open_backend


class TestS3MotoInProcess(BackendConformance):
    """moto patched into botocore in this process: fast, no sockets."""

    @pytest.fixture
    def backend(self) -> Iterator[ObjectBackend]:
        from moto import mock_aws

        with mock_aws():
            bucket = f"conf-{uuid.uuid4().hex[:16]}"
            backend = S3Backend(bucket, region_name="us-east-1")
            backend.client.create_bucket(Bucket=bucket)
            yield backend

    # An in-process moto lives in one interpreter; other processes cannot see it. The
    # process races run against the HTTP server below.
    shared_across_processes = False


class TestS3MotoServer(BackendConformance):
    """moto's HTTP server on 127.0.0.1: real sockets, real retries, real processes."""

    # 8 workers x 25 increments here (still hundreds of lost CAS rounds per run); the full
    # 8 x 50 runs in-process above. Every HTTP round trip through moto costs ~5 ms of CPU
    # on a shared 2-core machine, and the suite must stay fast.
    cas_increments = 25

    @pytest.fixture
    def backend(self, moto_server_url: str, s3_bucket: str) -> ObjectBackend:
        return open_backend(s3_bucket, moto_server_url)

    @pytest.fixture
    def backend_factory(self, moto_server_url: str, s3_bucket: str) -> BackendFactory:
        return functools.partial(open_backend, s3_bucket, moto_server_url)
