"""S3Backend specifics: request cost per operation, client construction and injection,
endpoint resolution, extra request arguments, pagination, lazy imports."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from eleanor_cloud.backends.base import CREATE, OVERWRITE, Version
from eleanor_cloud.backends.s3 import (
    CONNECT_TIMEOUT,
    READ_TIMEOUT,
    TOTAL_MAX_ATTEMPTS,
    WORST_CASE_CALL_SECONDS,
    S3Backend,
    from_url,
)
from eleanor_cloud.engine.options import LeaseOptions
from eleanor_cloud.store.registry import open_store
from eleanor_cloud.store.state_store import StateStore
from eleanor_cloud.testing.conformance import CounterState
from tests.s3.helpers import RequestCounter
from tests.support.proxy import FaultProxy

# -- request cost ------------------------------------------------------------------------


def test_each_store_operation_costs_the_minimum_of_requests(
    proxy: FaultProxy, s3_bucket: str
) -> None:
    store = open_store(f"s3://{s3_bucket}/runs", endpoint_url=proxy.url)
    backend = store.backend
    assert isinstance(backend, S3Backend)
    counter = RequestCounter(backend.client)
    assert counter.total == 0
    assert proxy.count() == 0  # opening made no request

    def cost(operation: Any) -> dict[str, int]:
        counter.clear()
        operation()
        return dict(counter.calls)

    state = CounterState(task_id="job-1", stage_name="extract")
    created: list[Any] = []
    assert cost(lambda: created.append(store.create(state))) == {"PUT": 1}
    changed = state.model_copy(update={"count": 1})
    assert cost(lambda: store.save(changed, replaces=created[0])) == {"PUT": 1}
    assert cost(lambda: store.load("job-1", "extract", CounterState)) == {"GET": 1}
    loaded = store.load_record("job-1", "extract", CounterState)
    again = loaded.value.model_copy(update={"count": 2})
    assert cost(lambda: store.save(again, replaces=loaded)) == {"PUT": 1}
    store.create(CounterState(task_id="job-1", stage_name="load"))
    assert cost(lambda: store.load_task("job-1", CounterState)) == {"GET": 3}  # LIST + 2
    assert cost(lambda: list(store.list_tasks())) == {"GET": 1}
    assert cost(lambda: store.delete("job-1", "load")) == {"DELETE": 1}
    # What the client sent is what the server received: no hidden HEAD, no bucket check.
    methods = {e.request.method for e in proxy.log}
    assert methods == {"PUT", "GET", "DELETE"}
    assert proxy.count() == proxy.count(forwarded=True)
    assert not [
        e for e in proxy.log if e.request.key == "" and "list-type=2" not in e.request.query
    ]


def test_listing_is_paginated_lazily_and_in_order(proxy: FaultProxy, s3_bucket: str) -> None:
    backend = S3Backend(s3_bucket, endpoint_url=proxy.url, page_size=2)
    keys = [
        "p/a.json",
        "p/b/1.json",
        "p/b/2.json",
        "p/c.json",
        "p/d/1.json",
        "p/e.json",
        "q/a.json",
    ]
    for key in keys:
        backend.write(key, b"x", CREATE)
    proxy.clear()
    assert list(backend.list("p/")) == keys[:-1]
    assert proxy.count("GET") == 3  # 6 keys, 2 per page
    proxy.clear()
    assert list(backend.list("p/", delimiter="/")) == [
        "p/a.json",
        "p/b/",
        "p/c.json",
        "p/d/",
        "p/e.json",
    ]
    proxy.clear()
    listing = backend.list("p/")
    assert proxy.count() == 0  # nothing is fetched until the caller iterates
    assert next(listing) == "p/a.json"
    assert proxy.count("GET") == 1


def test_versions_are_etags_exactly_as_s3_returns_them(
    s3_client: Any, server_backend: S3Backend
) -> None:
    version = server_backend.write("k/a.json", b'{"a": 1}', CREATE)
    head = s3_client.head_object(Bucket=server_backend.bucket, Key="k/a.json")
    assert version == Version(head["ETag"])
    assert version.token.startswith('"')
    assert head["ContentType"] == "application/json"
    assert server_backend.read("k/a.json") == (b'{"a": 1}', version)
    assert server_backend.write("k/a.json", b"2", OVERWRITE) != version


# -- client construction -----------------------------------------------------------------


def test_default_client_uses_standard_retries_and_user_config_wins() -> None:
    default = S3Backend("bucket-ok")
    assert default.client.meta.config.retries["mode"] == "standard"
    tuned = S3Backend("bucket-ok", config=Config(retries={"total_max_attempts": 7}, read_timeout=5))
    assert tuned.client.meta.config.retries == {"mode": "standard", "total_max_attempts": 7}
    assert tuned.client.meta.config.read_timeout == 5
    adaptive = S3Backend("bucket-ok", config=Config(retries={"mode": "adaptive"}))
    assert adaptive.client.meta.config.retries["mode"] == "adaptive"


def test_every_call_is_bounded_well_inside_a_lease_renewal_interval() -> None:
    config = S3Backend("bucket-ok").client.meta.config
    assert (config.connect_timeout, config.read_timeout) == (CONNECT_TIMEOUT, READ_TIMEOUT)
    assert (CONNECT_TIMEOUT, READ_TIMEOUT, TOTAL_MAX_ATTEMPTS) == (1.0, 2.0, 3)
    assert config.retries == {"mode": "standard", "total_max_attempts": TOTAL_MAX_ATTEMPTS}
    # Every attempt hangs to its timeouts, with standard mode's waits (<= 1 s, <= 2 s).
    assert WORST_CASE_CALL_SECONDS == 3 * (1.0 + 2.0) + 1.0 + 2.0 == 12.0
    lease = LeaseOptions()  # the engine's defaults: TTL 60 s, renewed every 20 s
    assert lease.interval * 0.6 >= WORST_CASE_CALL_SECONDS
    # A renewal that hangs for all of it still leaves the next one before the holder's
    # local deadline (TTL - margin after the last acknowledged renewal was sent).
    assert 2 * lease.interval + WORST_CASE_CALL_SECONDS < lease.ttl - lease.margin


def test_the_callers_config_wins_over_each_time_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    mine = Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 9})
    config = S3Backend("bucket-ok", config=mine).client.meta.config
    assert (config.connect_timeout, config.read_timeout) == (5, 30)
    # The caller's 9 retries (10 attempts), not ours next to them: botocore would let a
    # total_max_attempts beside max_attempts win.
    assert config.retries == {"mode": "standard", "total_max_attempts": 10}
    partial = S3Backend("bucket-ok", config=Config(read_timeout=10)).client.meta.config
    assert (partial.connect_timeout, partial.read_timeout) == (CONNECT_TIMEOUT, 10)
    assert partial.retries == {"mode": "standard", "total_max_attempts": TOTAL_MAX_ATTEMPTS}
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "6")
    from_env = S3Backend("bucket-ok").client.meta.config
    assert from_env.retries == {"mode": "standard", "total_max_attempts": 6}  # not our 3


def test_retry_mode_from_the_environment_beats_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_RETRY_MODE", "legacy")
    backend = S3Backend("bucket-ok")
    assert backend.client.meta.config.retries["mode"] == "legacy"
    explicit = S3Backend("bucket-ok", config=Config(retries={"mode": "standard"}))
    assert explicit.client.meta.config.retries["mode"] == "standard"


def test_retry_mode_from_the_profile_beats_the_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config_file = tmp_path / "config"
    config_file.write_text("[profile etl]\nretry_mode = adaptive\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config_file))
    backend = S3Backend("bucket-ok", session=boto3.Session(profile_name="etl"))
    assert backend.client.meta.config.retries["mode"] == "adaptive"


def test_injected_client_is_used_as_is(s3_client: Any, s3_bucket: str) -> None:
    store = open_store(f"s3://{s3_bucket}/runs", client=s3_client)
    assert isinstance(store.backend, S3Backend)
    assert store.backend.client is s3_client
    counter = RequestCounter(s3_client)
    store.create(CounterState(task_id="job-1", stage_name="extract"))
    assert counter.calls == {"PUT": 1}


def test_injected_session_builds_the_client(moto_server_url: str, s3_bucket: str) -> None:
    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="eu-west-1"
    )
    backend = S3Backend(s3_bucket, session=session, endpoint_url=moto_server_url)
    assert backend.client.meta.region_name == "eu-west-1"
    backend.write("k/a.json", b"x", CREATE)
    assert backend.read("k/a.json")[0] == b"x"


def test_endpoint_from_the_environment_and_explicit_argument_wins(
    monkeypatch: pytest.MonkeyPatch, proxy: FaultProxy, moto_server_url: str, s3_bucket: str
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.url)
    from_env = open_store(f"s3://{s3_bucket}/runs")
    from_env.create(CounterState(task_id="job-1", stage_name="extract"))
    assert proxy.count("PUT") == 1
    explicit = open_store(f"s3://{s3_bucket}/runs", endpoint_url=moto_server_url)
    assert explicit.load("job-1", "extract", CounterState).task_id == "job-1"
    assert proxy.count() == 1  # the explicit endpoint bypassed the one in the environment


def test_url_prefix_is_the_key_prefix(s3_client: Any, s3_bucket: str, moto_server_url: str) -> None:
    backend, prefix = from_url(f"s3://{s3_bucket}/team/runs/", endpoint_url=moto_server_url)
    assert (backend.bucket, prefix, backend.description) == (
        s3_bucket,
        "team/runs/",
        f"s3://{s3_bucket}",
    )
    store = StateStore(backend, prefix)
    store.create(CounterState(task_id="job-1", stage_name="extract"))
    listed = s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"]
    assert [o["Key"] for o in listed] == ["team/runs/job-1/extract.json"]


def test_extra_args_go_on_the_requests_that_take_them(proxy: FaultProxy, s3_bucket: str) -> None:
    backend = S3Backend(
        s3_bucket,
        endpoint_url=proxy.url,
        extra_args={"ServerSideEncryption": "AES256", "ExpectedBucketOwner": "123456789012"},
    )
    version = backend.write("k/a.json", b"x", CREATE)
    backend.read("k/a.json")
    list(backend.list("k/"))
    backend.delete("k/a.json", if_version=version)
    by_method = {e.request.method: e.request for e in proxy.log}
    assert set(by_method) == {"PUT", "GET", "DELETE"}
    assert by_method["PUT"].header("x-amz-server-side-encryption") == "AES256"
    for entry in proxy.log:
        assert entry.request.header("x-amz-expected-bucket-owner") == "123456789012"
        if entry.request.method != "PUT":
            assert entry.request.header("x-amz-server-side-encryption") is None


def test_importing_the_package_loads_no_boto3(moto_server_url: str, s3_bucket: str) -> None:
    script = textwrap.dedent(f"""
        import sys
        import eleanor_cloud
        eleanor_cloud.open_store("memory://")
        heavy = {{"boto3", "botocore", "eleanor_cloud.backends.s3"}} & set(sys.modules)
        assert not heavy, heavy
        store = eleanor_cloud.open_store("s3://{s3_bucket}/p", endpoint_url="{moto_server_url}")
        assert "eleanor_cloud.backends.s3" in sys.modules
        print(type(store.backend).__name__)
    """)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "S3Backend"
