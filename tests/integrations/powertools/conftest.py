"""Fixtures: the layer on S3 (moto over HTTP), memory:// and a local directory, a Lambda
context stub as Powertools' own tests use, and one fake clock for Powertools and us."""

from __future__ import annotations

import datetime as dt
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.idempotency import base as handler_base
from aws_lambda_powertools.utilities.idempotency.persistence import (
    base as persistence_base,
)
from aws_lambda_powertools.utilities.idempotency.persistence import datarecord

import eleanor_cloud as ec
from eleanor_cloud.backends.s3 import clear_probe_cache
from eleanor_cloud.integrations.powertools import ObjectStorePersistenceLayer
from tests.s3.helpers import assume_conditions_honoured

START = 1_800_000_000.0


class LambdaContext:
    """What ``@idempotent`` reads from a Lambda context (as in Powertools' tests)."""

    function_name = "test-func"
    memory_limit_in_mb = 128
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:test-func"
    aws_request_id = "52fdfc07-2182-154f-163f-5f0f9a621d72"

    def __init__(self, remaining_ms: int = 60_000) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


class FakeClock:
    """Epoch seconds that move only when a test says so."""

    def __init__(self, start: float = START) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """One clock for Powertools' ``datetime.now()`` (the timestamps it writes, its
    expiry checks) and for the layer (its takeover checks)."""
    fake = FakeClock()

    class _Datetime(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> Any:
            return dt.datetime.fromtimestamp(fake.now, tz)

    shim = types.SimpleNamespace(datetime=_Datetime, timedelta=dt.timedelta)
    for module in (handler_base, persistence_base, datarecord):
        monkeypatch.setattr(module, "dt", shim)
    return fake


@pytest.fixture
def s3_store(moto_server_url: str, s3_bucket: str, s3_client: Any) -> Iterator[ec.StateStore]:
    clear_probe_cache()
    assume_conditions_honoured(moto_server_url, s3_bucket)
    yield ec.open_store(f"s3://{s3_bucket}/idem", client=s3_client)
    clear_probe_cache()


@pytest.fixture(params=["s3", "memory", "dir"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ec.StateStore:
    if request.param == "s3":
        store: ec.StateStore = request.getfixturevalue("s3_store")
        return store
    if request.param == "memory":
        return ec.open_store("memory://")
    return ec.open_store(str(tmp_path / "store"))


@pytest.fixture
def layer(store: ec.StateStore, clock: FakeClock) -> ObjectStorePersistenceLayer:
    return ObjectStorePersistenceLayer(store, clock=clock)
