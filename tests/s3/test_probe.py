"""The conditional-write probe: before its first conditional write, once per process and
endpoint and bucket, S3Backend checks that the endpoint honours If-None-Match/If-Match.

The endpoint that ignores them is moto's HTTP server behind the fault proxy with the
``strip_conditions`` rule: the headers never reach the server, exactly what a client
sees from a store that accepts them and ignores them.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import uuid
from typing import Any

import pytest

from eleanor_cloud.backends.base import CREATE
from eleanor_cloud.backends.fsspec import UnsafeBackendWarning
from eleanor_cloud.backends.s3 import PROBE_REQUESTS, S3Backend, from_url
from eleanor_cloud.errors import AlreadyExists, NotSupported, Unavailable
from eleanor_cloud.store.registry import open_store
from eleanor_cloud.testing.conformance import CounterState
from tests.s3.helpers import RequestCounter
from tests.support.proxy import (
    FORWARD_THEN_DROP,
    FaultProxy,
    Forward,
    Respond,
    matching,
    strip_conditions,
)

pytestmark = pytest.mark.usefixtures("cold_probe_cache")

PROBE_KEY = "runs/_probe/conditions.json"


def _state(task_id: str = "job-1") -> CounterState:
    return CounterState(task_id=task_id, stage_name="extract")


def _puts(proxy: FaultProxy) -> list[tuple[str, int | None]]:
    return [(e.request.key, e.status) for e in proxy.requests("PUT")]


def test_the_probe_costs_three_puts_once_per_process_then_a_save_is_one_put(
    proxy: FaultProxy, s3_bucket: str
) -> None:
    assert PROBE_REQUESTS == 3
    store = open_store(f"s3://{s3_bucket}/runs", endpoint_url=proxy.url)
    counter = RequestCounter(store.backend.client)  # type: ignore[attr-defined]
    created = store.create(_state())
    assert counter.calls == {"PUT": PROBE_REQUESTS + 1}
    # Created, refused on the second create, refused on the stale If-Match; then the write.
    assert _puts(proxy) == [
        (PROBE_KEY, 200),
        (PROBE_KEY, 412),
        (PROBE_KEY, 412),
        ("runs/job-1/extract.json", 200),
    ]
    assert proxy.requests("PUT")[2].request.header("If-Match") is not None
    counter.clear()
    store.save(_state().model_copy(update={"count": 1}), replaces=created)
    store.create(_state("job-2"))
    assert counter.calls == {"PUT": 2}  # steady state: one PUT per write
    # Another store (its own client) on the same endpoint and bucket asks no more.
    again = open_store(f"s3://{s3_bucket}/runs", endpoint_url=proxy.url)
    again_counter = RequestCounter(again.backend.client)  # type: ignore[attr-defined]
    again.create(_state("job-3"))
    assert again_counter.calls == {"PUT": 1}
    # The probe object is never a task.
    assert list(store.list_tasks()) == ["job-1", "job-2", "job-3"]


def test_reads_and_listings_never_probe(proxy: FaultProxy, s3_bucket: str) -> None:
    store = open_store(f"s3://{s3_bucket}/runs", endpoint_url=proxy.url)
    assert list(store.list_tasks()) == []
    assert store.load_lease("job-1") is None
    assert proxy.count("PUT") == 0


def test_a_fresh_process_probes_again_and_an_existing_probe_object_is_fine(
    moto_server_url: str, s3_bucket: str
) -> None:
    script = textwrap.dedent(f"""
        from eleanor_cloud.store.registry import open_store
        from eleanor_cloud.testing.conformance import CounterState
        from tests.s3.helpers import RequestCounter

        store = open_store("s3://{s3_bucket}/runs", endpoint_url="{moto_server_url}")
        counter = RequestCounter(store.backend.client)
        store.create(CounterState(task_id=__import__("sys").argv[1], stage_name="extract"))
        print(counter.calls["PUT"])
    """)
    for task_id, probe_puts in (("proc-1", PROBE_REQUESTS), ("proc-2", PROBE_REQUESTS - 1)):
        out = subprocess.run(
            [sys.executable, "-c", script, task_id],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        # The second process finds the first one's probe object: its first create is
        # refused, which proves If-None-Match is evaluated, so it skips the second create
        # (2 probe PUTs, not 3); the stale If-Match is still asked, and refused.
        assert out.stdout.strip() == str(probe_puts + 1)


def test_an_endpoint_that_ignores_conditions_is_refused_before_any_write(
    proxy: FaultProxy, s3_bucket: str, s3_client: Any
) -> None:
    proxy.rule = strip_conditions
    store = open_store(f"s3://{s3_bucket}/runs", endpoint_url=proxy.url)
    with pytest.raises(NotSupported) as info:
        store.create(_state())
    message = str(info.value)
    for needle in (
        f"s3://{s3_bucket} at {proxy.url}",
        "create-if-absent and compare-and-swap",
        "If-None-Match",
        "If-Match",
        PROBE_KEY,
        "unsafe_unconditional=True",
    ):
        assert needle in message, (needle, message)
    assert "\n" not in message
    # The three probe PUTs were all accepted (the server never saw a condition), and
    # the task's object was never written.
    assert _puts(proxy) == [(PROBE_KEY, 200)] * 3
    listed = s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"]
    assert [o["Key"] for o in listed] == [PROBE_KEY]
    # The verdict is kept: the next write is refused without asking again.
    with pytest.raises(NotSupported):
        store.create(_state("job-2"))
    assert proxy.count("PUT") == PROBE_REQUESTS


def test_an_endpoint_that_ignores_only_if_match_is_refused_for_compare_and_swap(
    proxy: FaultProxy, s3_bucket: str
) -> None:
    strip_if_match = Forward(strip_headers=("If-Match",))
    proxy.rule = lambda request: strip_if_match if request.method == "PUT" else None
    backend, _ = from_url(f"s3://{s3_bucket}/runs", endpoint_url=proxy.url)
    with pytest.raises(NotSupported) as info:
        backend.write("runs/job-1/extract.json", b"{}", CREATE)
    message = str(info.value)
    assert "cannot perform compare-and-swap atomically" in message
    assert "If-None-Match" not in message
    assert _puts(proxy) == [(PROBE_KEY, 200), (PROBE_KEY, 412), (PROBE_KEY, 200)]


def test_unsafe_unconditional_writes_anyway_with_a_warning(
    proxy: FaultProxy, s3_bucket: str
) -> None:
    proxy.rule = strip_conditions
    store = open_store(f"s3://{s3_bucket}/runs", endpoint_url=proxy.url, unsafe_unconditional=True)
    with pytest.warns(UnsafeBackendWarning, match="unsafe_unconditional=True") as caught:
        store.create(_state())
    assert len(caught) == 1
    assert f"s3://{s3_bucket} at {proxy.url}" in str(caught[0].message)
    assert "UNSAFE" in store.backend.description
    # Warned once per backend; later writes go ahead quietly (any warning is an error).
    store.create(_state("job-2"))
    assert list(store.list_tasks()) == ["job-1", "job-2"]
    # Unsafe indeed: with the headers stripped a second create "wins" too.
    store.create(_state())


def test_unsafe_unconditional_on_an_endpoint_that_honours_conditions_is_quiet(
    proxy: FaultProxy, s3_bucket: str
) -> None:
    store = open_store(f"s3://{s3_bucket}/runs", endpoint_url=proxy.url, unsafe_unconditional=True)
    store.create(_state())
    with pytest.raises(AlreadyExists):
        store.create(_state())
    assert "UNSAFE" not in store.backend.description


def test_a_probe_that_fails_caches_nothing_and_names_the_callers_write(
    proxy: FaultProxy, s3_bucket: str
) -> None:
    store = open_store(f"s3://{s3_bucket}/runs", endpoint_url=proxy.url)
    slow_down = Respond(503, "SlowDown", "Reduce your request rate")
    proxy.inject(slow_down, when=matching("PUT"), times=3)
    with pytest.raises(Unavailable) as info:
        store.create(_state())
    message = str(info.value)
    assert f"s3://{s3_bucket}/runs/job-1/extract.json" in message
    assert f"conditional-write probe on {PROBE_KEY!r}" in message
    assert proxy.count("PUT", forwarded=True) == 0
    proxy.clear()
    store.create(_state())  # asks again, and this time it can
    assert _puts(proxy)[-1] == ("runs/job-1/extract.json", 200)
    assert proxy.count("PUT") == PROBE_REQUESTS + 1


def test_a_lost_answer_to_a_probe_put_still_proves_the_condition(
    proxy: FaultProxy, s3_bucket: str
) -> None:
    store = open_store(f"s3://{s3_bucket}/runs", endpoint_url=proxy.url)
    # The first create lands unanswered; botocore's retry is refused 412 (it exists),
    # which proves If-None-Match is evaluated: no second create, then the stale If-Match.
    proxy.inject(FORWARD_THEN_DROP, when=matching("PUT"))
    store.create(_state())
    assert [status for _, status in _puts(proxy)] == [None, 412, 412, 200]


def test_concurrent_first_writes_wait_for_one_probe(proxy: FaultProxy, s3_bucket: str) -> None:
    store = open_store(f"s3://{s3_bucket}/runs", endpoint_url=proxy.url)
    start = threading.Barrier(8)

    def create(n: int) -> None:
        start.wait()
        store.create(_state(f"job-{n}"))

    threads = [threading.Thread(target=create, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert proxy.count("PUT", key=PROBE_KEY) == PROBE_REQUESTS
    assert proxy.count("PUT") == PROBE_REQUESTS + 8


def test_in_process_moto_honours_conditions_too() -> None:
    from moto import mock_aws

    with mock_aws():
        bucket = f"probe-{uuid.uuid4().hex[:12]}"
        backend = S3Backend(bucket, region_name="us-east-1", probe_prefix="runs")
        backend.client.create_bucket(Bucket=bucket)
        verdict = backend.probe_conditions()
    assert (verdict.create_honoured, verdict.replace_honoured) == (True, True)
    assert verdict.key == PROBE_KEY and verdict.bucket == bucket


def test_the_probe_key_is_under_the_url_prefix_and_never_a_task_id() -> None:
    assert from_url("s3://bucket-ok/team/runs/")[0].probe_key == "team/runs/_probe/conditions.json"
    assert from_url("s3://bucket-ok")[0].probe_key == "_probe/conditions.json"
    assert S3Backend("bucket-ok").probe_key == "_probe/conditions.json"
    from eleanor_cloud.keys import is_valid_task_id

    assert not is_valid_task_id("_probe")


def test_a_verified_endpoint_and_bucket_in_the_environment_skip_the_probe_and_say_so(
    proxy: FaultProxy,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("ELEANOR_CONDITIONS_VERIFIED", f"http://x/other, {proxy.url}/{s3_bucket}")
    store = open_store(f"s3://{s3_bucket}/runs", endpoint_url=proxy.url)
    with caplog.at_level("INFO", logger="eleanor_cloud.backends.s3"):
        store.create(_state())
    assert _puts(proxy) == [("runs/job-1/extract.json", 200)]  # no probe PUT
    assert any(
        "taken as verified from ELEANOR_CONDITIONS_VERIFIED" in r.getMessage()
        and s3_bucket in r.getMessage()
        for r in caplog.records
    )


@pytest.mark.parametrize(
    "entry",
    [
        "{url}/other-bucket",  # another bucket
        "http://127.0.0.1:1/{bucket}",  # another endpoint (the proxy is not the server)
        "{url}/{bucket}-2",  # not an exact entry
        "",
    ],
)
def test_anything_but_an_exact_entry_probes_and_an_ignoring_endpoint_is_still_refused(
    proxy: FaultProxy, s3_bucket: str, monkeypatch: pytest.MonkeyPatch, entry: str
) -> None:
    monkeypatch.setenv("ELEANOR_CONDITIONS_VERIFIED", entry.format(url=proxy.url, bucket=s3_bucket))
    proxy.rule = strip_conditions
    store = open_store(f"s3://{s3_bucket}/runs", endpoint_url=proxy.url)
    with pytest.raises(NotSupported):
        store.create(_state())
    assert _puts(proxy) == [(PROBE_KEY, 200)] * PROBE_REQUESTS
