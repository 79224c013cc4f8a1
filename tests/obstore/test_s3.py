"""ObstoreBackend on S3 (the moto HTTP server, through the fault proxy where a test needs
faults): how it is selected and configured, what one operation costs on the wire, the
conditions probe, errors at the boundary, time bounds, and working beside the boto3
backend on one bucket."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest

from eleanor_cloud.backends.base import CREATE, OVERWRITE, Replace, Version
from eleanor_cloud.backends.fsspec import UnsafeBackendWarning
from eleanor_cloud.backends.obstore import (
    CONNECT_TIMEOUT,
    PROBE_REQUESTS,
    READ_TIMEOUT,
    ObstoreBackend,
    clear_probe_cache,
    from_url,
)
from eleanor_cloud.backends.s3 import S3Backend
from eleanor_cloud.errors import (
    AccessDenied,
    AlreadyExists,
    BucketNotFound,
    Conflict,
    NotFound,
    NotSupported,
    Unavailable,
)
from eleanor_cloud.store.registry import open_store
from eleanor_cloud.testing.conformance import CounterState
from tests.obstore.helpers import s3_backend
from tests.support.proxy import (
    FORWARD_THEN_DROP,
    Delay,
    FaultProxy,
    ForwardThenTruncate,
    Respond,
    matching,
    strip_conditions,
)
from tests.support.servers import free_port

PROBE_KEY = "runs/_probe/conditions.json"


def _state(task_id: str = "job-1", count: int = 0) -> CounterState:
    return CounterState(task_id=task_id, stage_name="extract", count=count)


def _puts(proxy: FaultProxy) -> list[tuple[str, int | None]]:
    return [(e.request.key, e.status) for e in proxy.requests("PUT")]


# -- selection and configuration -------------------------------------------------------


def test_backend_obstore_and_the_url_form_open_the_same_backend(
    moto_server_url: str, s3_bucket: str
) -> None:
    by_argument = open_store(
        f"s3://{s3_bucket}/runs", backend="obstore", endpoint_url=moto_server_url
    )
    by_url = open_store(f"obstore+s3://{s3_bucket}/runs", endpoint_url=moto_server_url)
    for store in (by_argument, by_url):
        assert isinstance(store.backend, ObstoreBackend)
        assert store.prefix == "runs"
        assert store.backend.description == f"obstore+s3://{s3_bucket}"
    by_argument.create(_state())
    assert by_url.load("job-1", "extract", CounterState) == _state()
    # The default for s3:// stays boto3 (see the README's obstore section for why).
    assert isinstance(open_store(f"s3://{s3_bucket}/runs").backend, S3Backend)


def test_the_environment_endpoint_is_honoured_and_an_argument_beats_it(
    moto_server_url: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_server_url)
    store = open_store(f"obstore+s3://{s3_bucket}/runs")  # http:// endpoint: allow_http
    store.create(_state())
    assert store.backend.endpoint == moto_server_url  # type: ignore[attr-defined]
    # An explicit endpoint wins over the environment (nothing listens there).
    dead = f"http://127.0.0.1:{free_port()}"
    elsewhere = open_store(f"obstore+s3://{s3_bucket}/runs", endpoint_url=dead)
    with pytest.raises(Unavailable, match=rf"s3://{s3_bucket}/runs/job-1/extract.json"):
        elsewhere.load("job-1", "extract", CounterState)


def test_time_bounds_are_the_defaults_and_the_callers_options_win(s3_bucket: str) -> None:
    backend, _ = from_url(f"obstore+s3://{s3_bucket}", endpoint_url="http://127.0.0.1:9")
    options = backend.store.client_options
    assert options["connect_timeout"] == f"{CONNECT_TIMEOUT:.0f}s"
    assert options["read_timeout"] == f"{READ_TIMEOUT:.0f}s"
    assert options["allow_http"] == "true"  # obstore reports options as strings
    retry = backend.store.retry_config
    assert retry["max_retries"] == 2 and retry["backoff"]["base"] == 2.0
    mine, _ = from_url(
        f"obstore+s3://{s3_bucket}",
        client_options={"read_timeout": "10s"},
        retry_config={"max_retries": 5},
    )
    assert mine.store.client_options["read_timeout"] == "10s"
    assert mine.store.client_options["connect_timeout"] == "1s"
    assert "allow_http" not in mine.store.client_options  # AWS's own endpoint is https
    assert mine.store.retry_config["max_retries"] == 5


def test_a_silent_answer_is_abandoned_at_the_read_timeout_and_retried(
    proxy: FaultProxy, s3_bucket: str
) -> None:
    backend = s3_backend(proxy.url, s3_bucket)
    backend.write("k.json", b"body", OVERWRITE)
    proxy.inject(Delay(READ_TIMEOUT + 2), when=matching("GET"))
    started = time.monotonic()
    assert backend.read("k.json")[0] == b"body"
    elapsed = time.monotonic() - started
    assert READ_TIMEOUT <= elapsed < READ_TIMEOUT + 1.5, elapsed
    proxy.wait_settled()  # the abandoned GET is logged once its delay is over
    assert proxy.count("GET") == 2


# -- the requests ----------------------------------------------------------------------


def test_the_probe_costs_three_puts_once_per_process_then_a_save_is_one_put(
    proxy: FaultProxy, s3_bucket: str
) -> None:
    assert PROBE_REQUESTS == 3
    store = open_store(f"obstore+s3://{s3_bucket}/runs", endpoint_url=proxy.url)
    created = store.create(_state())
    assert _puts(proxy) == [
        (PROBE_KEY, 200),
        (PROBE_KEY, 412),
        (PROBE_KEY, 412),
        ("runs/job-1/extract.json", 200),
    ]
    proxy.clear()
    store.save(_state(count=1), replaces=created)
    store.create(_state("job-2"))
    assert [e.request.method for e in proxy.log] == ["PUT", "PUT"]
    assert proxy.log[0].request.header("If-Match") == created.version.token
    assert proxy.log[1].request.header("If-None-Match") == "*"
    # Another backend on the same endpoint and bucket asks no more.
    again = open_store(f"obstore+s3://{s3_bucket}/runs", endpoint_url=proxy.url)
    proxy.clear()
    again.create(_state("job-3"))
    assert proxy.count("PUT") == 1
    assert list(store.list_tasks()) == ["job-1", "job-2", "job-3"]
    # A new process (an empty cache) finds the probe object: its refused create proves
    # If-None-Match is evaluated, so it probes with 2 PUTs, not 3.
    clear_probe_cache()
    proxy.clear()
    open_store(f"obstore+s3://{s3_bucket}/runs", endpoint_url=proxy.url).create(_state("job-4"))
    assert _puts(proxy) == [(PROBE_KEY, 412), (PROBE_KEY, 412), ("runs/job-4/extract.json", 200)]
    assert proxy.log[1].request.header("If-Match") == '"00000000000000000000000000000000"'


def test_an_endpoint_that_ignores_conditions_is_refused_before_any_write(
    proxy: FaultProxy, s3_bucket: str, s3_client: Any
) -> None:
    proxy.rule = strip_conditions
    store = open_store(f"obstore+s3://{s3_bucket}/runs", endpoint_url=proxy.url)
    with pytest.raises(NotSupported) as info:
        store.create(_state())
    message = str(info.value)
    for needle in (
        f"s3://{s3_bucket} at {proxy.url}",
        "create-if-absent and compare-and-swap",
        PROBE_KEY,
        "unsafe_unconditional=True",
    ):
        assert needle in message, (needle, message)
    assert "\n" not in message
    assert _puts(proxy) == [(PROBE_KEY, 200)] * 3
    listed = s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"]
    assert [o["Key"] for o in listed] == [PROBE_KEY]
    with pytest.raises(NotSupported):  # the verdict is kept: no second probe
        store.create(_state("job-2"))
    assert proxy.count("PUT") == PROBE_REQUESTS


def test_unsafe_unconditional_writes_anyway_and_says_so(proxy: FaultProxy, s3_bucket: str) -> None:
    proxy.rule = strip_conditions
    store = open_store(
        f"obstore+s3://{s3_bucket}/runs", endpoint_url=proxy.url, unsafe_unconditional=True
    )
    with pytest.warns(UnsafeBackendWarning, match="ignores create-if-absent"):
        store.create(_state())
    assert "UNSAFE" in store.backend.description
    assert store.load("job-1", "extract", CounterState) == _state()


def test_a_failed_probe_caches_nothing_and_is_reported_for_the_callers_write(
    proxy: FaultProxy, s3_bucket: str
) -> None:
    store = open_store(f"obstore+s3://{s3_bucket}/runs", endpoint_url=proxy.url)
    proxy.inject(
        Respond(503, "SlowDown", "Reduce your request rate"), when=matching("PUT"), times=3
    )
    with pytest.raises(Unavailable) as info:
        store.create(_state())
    message = str(info.value)
    assert f"s3://{s3_bucket}/runs/job-1/extract.json" in message
    assert "in the conditional-write probe on 'runs/_probe/conditions.json' first" in message
    assert "after 3 attempts" in message
    store.create(_state())  # the next write probes again, and succeeds
    assert proxy.count("PUT") == 3 + PROBE_REQUESTS + 1  # the object is new: 3 probe PUTs


def test_a_lost_answer_to_a_create_is_recognised_as_our_own_write(
    proxy: FaultProxy, s3_bucket: str
) -> None:
    store = open_store(f"obstore+s3://{s3_bucket}/runs", endpoint_url=proxy.url)
    store.create(_state("warm"))  # the probe, out of the way
    proxy.inject(FORWARD_THEN_DROP, when=matching("PUT", key="runs/job-1/extract.json"))
    record = store.create(_state())
    assert record.value == _state()
    # object_store resends a request whose connection closed unanswered; the resent
    # create is refused (the first landed), and the store's one GET finds its own
    # write_id there: the create succeeded, once.
    assert [e.status for e in proxy.requests("PUT", key="runs/job-1/extract.json")] == [None, 412]
    assert proxy.count("GET", key="runs/job-1/extract.json") == 1


def test_a_truncated_body_is_read_again(proxy: FaultProxy, s3_bucket: str) -> None:
    backend = s3_backend(proxy.url, s3_bucket)
    version = backend.write("k.json", b"x" * 5000, OVERWRITE)
    proxy.inject(ForwardThenTruncate(100), when=matching("GET"))
    assert backend.read("k.json") == (b"x" * 5000, version)


def test_conditional_request_conflicts_are_retried_then_reported_as_conflict(
    proxy: FaultProxy, s3_bucket: str
) -> None:
    slept: list[float] = []
    backend, _ = from_url(f"obstore+s3://{s3_bucket}", endpoint_url=proxy.url)
    backend._sleep = slept.append  # type: ignore[attr-defined]  # no real waiting
    backend.write("warm.json", b"x", CREATE)  # the probe, out of the way
    busy = Respond(409, "ConditionalRequestConflict", "A conflicting operation is in progress")
    proxy.inject(busy, when=matching("PUT", key="a.json"), times=2)
    version = backend.write("a.json", b"one", CREATE)
    assert backend.read("a.json") == (b"one", version)
    assert proxy.count("PUT", key="a.json") == 3 and len(slept) == 2
    proxy.inject(busy, when=matching("PUT", key="b.json"), times=100)
    with pytest.raises(Conflict) as info:
        backend.write("b.json", b"one", CREATE)
    assert not isinstance(info.value, AlreadyExists)
    assert "kept conflicting with concurrent conditional writes" in str(info.value)


# -- errors at the boundary ------------------------------------------------------------


@pytest.mark.parametrize(
    ("respond", "expected", "needles"),
    [
        (
            Respond(403, "AccessDenied", "Access Denied"),
            AccessDenied,
            ["access denied for overwrite", "s3:PutObject"],
        ),
        (
            Respond(403, "InvalidAccessKeyId", "The key does not exist"),
            AccessDenied,
            ["credentials are invalid or expired"],
        ),
        (Respond(503, "ServiceUnavailable", "Please retry"), Unavailable, ["after 3 attempts"]),
        (Respond(500, "InternalError", "We hit a snag"), Unavailable, ["HTTP 500 InternalError"]),
    ],
)
def test_store_failures_are_one_line_naming_bucket_and_key(
    proxy: FaultProxy,
    s3_bucket: str,
    respond: Respond,
    expected: type[Exception],
    needles: list[str],
) -> None:
    backend = s3_backend(proxy.url, s3_bucket)
    proxy.inject(respond, when=matching("PUT"), times=10)
    with pytest.raises(expected) as info:
        backend.write("runs/k.json", b"x", OVERWRITE)
    message = str(info.value)
    assert message.startswith(f"s3://{s3_bucket}/runs/k.json")
    assert "\n" not in message and "Debug source" not in message
    for needle in needles:
        assert needle in message, (needle, message)
    assert info.value.__cause__ is not None


def test_missing_bucket_and_key_and_unreachable_endpoint(
    moto_server_url: str, s3_bucket: str
) -> None:
    backend = s3_backend(moto_server_url, s3_bucket)
    with pytest.raises(NotFound, match=rf"s3://{s3_bucket}/nope.json: no such object"):
        backend.read("nope.json")
    backend.delete("nope.json")  # deleting nothing is done
    missing = s3_backend(moto_server_url, f"nope-{uuid.uuid4().hex[:12]}")
    for call in (
        lambda: missing.read("a.json"),
        lambda: missing.write("a.json", b"x", CREATE),
        lambda: list(missing.list("")),
    ):
        with pytest.raises(BucketNotFound, match="bucket does not exist"):
            call()
    dead = s3_backend(f"http://127.0.0.1:{free_port()}", s3_bucket)
    with pytest.raises(Unavailable, match="unreachable or the connection broke"):
        dead.read("a.json")


def test_conditional_delete_is_not_supported_and_deletes_nothing(
    moto_server_url: str, s3_bucket: str
) -> None:
    backend = s3_backend(moto_server_url, s3_bucket)
    version = backend.write("a.json", b"one", CREATE)
    with pytest.raises(NotSupported, match="conditional delete"):
        backend.delete("a.json", if_version=version)
    assert backend.read("a.json") == (b"one", version)


# -- keys, listings, and the boto3 backend on the same bucket --------------------------


def test_string_prefixes_list_like_s3_across_path_segments(
    moto_server_url: str, s3_bucket: str
) -> None:
    backend = s3_backend(moto_server_url, s3_bucket)
    for key in (
        "r/job-1/a.json",
        "r/job-10/a.json",
        "r/job-2.json",
        "r/other/a.json",
        "ü x/é.json",
    ):
        backend.write(key, b"x", CREATE)
    assert list(backend.list("r/job-1")) == ["r/job-1/a.json", "r/job-10/a.json"]
    assert list(backend.list("r/job", delimiter="/")) == ["r/job-1/", "r/job-10/", "r/job-2.json"]
    assert list(backend.list("r/job-1/", delimiter="/")) == ["r/job-1/a.json"]
    assert list(backend.list("", delimiter="/")) == ["_probe/", "r/", "ü x/"]
    assert list(backend.list("ü")) == ["ü x/é.json"]
    assert backend.read("ü x/é.json")[0] == b"x"


def test_the_version_is_the_etag_boto3_sees_so_both_backends_share_a_bucket(
    moto_server_url: str, s3_bucket: str
) -> None:
    fast = s3_backend(moto_server_url, s3_bucket)
    classic = S3Backend(s3_bucket, endpoint_url=moto_server_url, region_name="us-east-1")
    v1 = fast.write("a.json", b"one", CREATE)
    assert classic.read("a.json") == (b"one", v1)
    v2 = classic.write("a.json", b"two", Replace(v1))
    assert fast.read("a.json") == (b"two", v2)
    v3 = fast.write("a.json", b"three", Replace(v2))
    with pytest.raises(Conflict):
        classic.write("a.json", b"stale", Replace(v2))
    assert classic.read("a.json") == (b"three", v3)
    assert isinstance(v3, Version)


def test_threads_share_one_backend(moto_server_url: str, s3_bucket: str) -> None:
    backend = s3_backend(moto_server_url, s3_bucket)
    winners: list[int] = []
    barrier = threading.Barrier(8)

    def race(i: int) -> None:
        barrier.wait()
        try:
            backend.write("one.json", str(i).encode(), CREATE)
        except AlreadyExists:
            return
        winners.append(i)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(winners) == 1
    assert backend.read("one.json")[0] == str(winners[0]).encode()


def test_eleanor_cloud_check_reports_an_obstore_store(
    moto_server_url: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from eleanor_cloud.cli.checking import run_checks

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_server_url)
    doc = run_checks(f"obstore+s3://{s3_bucket}/runs")
    assert doc.ok and doc.backend == "ObstoreBackend"
    assert (doc.conditional_create, doc.conditional_replace) == (True, True)
    assert doc.endpoint == moto_server_url and doc.probe_key == PROBE_KEY
    delete = next(row for row in doc.checks if row.name == "delete")
    assert "no conditional delete here" in delete.detail
