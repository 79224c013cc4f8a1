"""Faults on the wire between boto3 and the moto HTTP server, through the FaultProxy.

The claim under test: after the client's retries, the store reports success exactly
when the write landed, and the object then holds that write once (its revision moved
by exactly one). Lost responses, lost requests, 5xx, throttling, 409 conflicts and
late duplicates are injected per request; the proxy log says what reached the server.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from botocore.config import Config

from eleanor_cloud.backends.base import CREATE
from eleanor_cloud.backends.s3 import S3Backend
from eleanor_cloud.errors import Conflict, NotFound, Unavailable
from eleanor_cloud.store.state_store import StateStore
from eleanor_cloud.testing.conformance import CounterState
from tests.support.proxy import (
    DROP,
    FORWARD_THEN_DROP,
    FaultProxy,
    ForwardThenTruncate,
    Hold,
    LogEntry,
    Respond,
    matching,
)

PUT = matching("PUT")
CONDITIONAL_PUT = matching("PUT", header="If-Match")


def _backend(proxy: FaultProxy, bucket: str, **config: Any) -> S3Backend:
    # total_max_attempts counts the first try; Config's max_attempts counts only retries.
    retries = {"total_max_attempts": config.pop("attempts", 3)}
    return S3Backend(
        bucket,
        endpoint_url=proxy.url,
        region_name="us-east-1",
        config=Config(retries=retries, **config),
    )  # type: ignore[arg-type]


def _state(**fields: Any) -> CounterState:
    return CounterState(task_id=f"t-{uuid.uuid4().hex[:8]}", stage_name="counter", **fields)


def _stored(moto_server_url: str, bucket: str, state: CounterState) -> Any:
    direct = StateStore(S3Backend(bucket, endpoint_url=moto_server_url), "p")
    return direct.load_record(state.task_id, "counter", CounterState)


def _statuses(entries: list[LogEntry]) -> list[int | None]:
    return [e.status for e in entries]


def test_proxy_is_transparent(proxy: FaultProxy, s3_bucket: str) -> None:
    store = StateStore(_backend(proxy, s3_bucket), "p")
    state = _state()
    created = store.create(state)
    store.save(state.model_copy(update={"count": 1}), replaces=created)
    assert store.load(state.task_id, "counter", CounterState).count == 1
    assert [(e.request.method, e.status, e.forwarded) for e in proxy.log] == [
        ("PUT", 200, True),
        ("PUT", 200, True),
        ("GET", 200, True),
    ]


def test_lost_response_to_create_is_reconciled(
    proxy: FaultProxy, s3_bucket: str, moto_server_url: str
) -> None:
    store = StateStore(_backend(proxy, s3_bucket), "p")
    state = _state(count=5)
    proxy.inject(FORWARD_THEN_DROP, when=PUT)
    record = store.create(state)
    # The first PUT landed unanswered; botocore re-sent it and S3 said 412; one GET
    # recognised the store's own write_id.
    assert _statuses(proxy.requests("PUT")) == [None, 412]
    assert _statuses(proxy.requests("GET")) == [200]
    stored = _stored(moto_server_url, s3_bucket, state)
    assert (stored.revision, stored.write_id, stored.value.count) == (1, record.write_id, 5)
    again = store.save(state.model_copy(update={"count": 6}), replaces=record)
    assert again.revision == 2  # the reconciled record is usable at once
    assert proxy.count("GET") == 1


def test_lost_response_to_replace_moves_revision_by_exactly_one(
    proxy: FaultProxy, s3_bucket: str, moto_server_url: str
) -> None:
    store = StateStore(_backend(proxy, s3_bucket), "p")
    state = _state()
    created = store.create(state)
    second = store.save(state.model_copy(update={"count": 1}), replaces=created)
    proxy.clear()
    proxy.inject(FORWARD_THEN_DROP, when=CONDITIONAL_PUT)
    record = store.save(state.model_copy(update={"count": 2}), replaces=second)
    assert record.revision == 3
    assert _statuses(proxy.requests("PUT")) == [None, 412]
    assert proxy.count("GET") == 1
    stored = _stored(moto_server_url, s3_bucket, state)
    assert (stored.revision, stored.write_id, stored.value.count) == (3, record.write_id, 2)


def test_every_response_lost_still_reports_the_write_that_landed(
    proxy: FaultProxy, s3_bucket: str, moto_server_url: str
) -> None:
    store = StateStore(_backend(proxy, s3_bucket, attempts=3), "p")
    state = _state()
    created = store.create(state)
    proxy.inject(FORWARD_THEN_DROP, when=CONDITIONAL_PUT, times=3)
    # botocore gives up (Unavailable); the store reads once and finds its own write.
    record = store.save(state.model_copy(update={"count": 9}), replaces=created)
    assert record.revision == 2
    assert _statuses(proxy.requests("PUT")) == [200, None, None, None]
    assert proxy.count("GET") == 1
    stored = _stored(moto_server_url, s3_bucket, state)
    assert (stored.revision, stored.write_id, stored.value.count) == (2, record.write_id, 9)


def test_requests_that_never_arrive_report_failure_and_change_nothing(
    proxy: FaultProxy, s3_bucket: str, moto_server_url: str
) -> None:
    store = StateStore(_backend(proxy, s3_bucket, attempts=3), "p")
    state = _state()
    before = store.create(state)
    proxy.inject(DROP, when=PUT, times=3)
    with pytest.raises(Unavailable) as info:
        store.save(state.model_copy(update={"count": 1}), replaces=before)
    message = str(info.value)
    assert "\n" not in message
    assert s3_bucket in message
    assert f"p/{state.task_id}/counter.json" in message
    assert proxy.count("PUT", forwarded=True) == 1  # only the create reached S3
    assert proxy.count("GET") == 1  # the reconciliation read found someone else's body
    stored = _stored(moto_server_url, s3_bucket, state)
    assert (stored.revision, stored.write_id, stored.value.count) == (1, before.write_id, 0)


def test_server_error_is_retried_by_botocore_without_a_reconciling_read(
    proxy: FaultProxy, s3_bucket: str, moto_server_url: str
) -> None:
    store = StateStore(_backend(proxy, s3_bucket), "p")
    state = _state()
    proxy.inject(Respond(500, "InternalError", "We encountered an internal error."), when=PUT)
    record = store.create(state)
    assert _statuses(proxy.requests("PUT")) == [500, 200]
    assert proxy.count("PUT", forwarded=True) == 1
    assert proxy.count("GET") == 0
    assert _stored(moto_server_url, s3_bucket, state).write_id == record.write_id


def test_persistent_throttling_is_unavailable_and_nothing_is_written(
    proxy: FaultProxy, s3_bucket: str, moto_server_url: str
) -> None:
    store = StateStore(_backend(proxy, s3_bucket, attempts=2), "p")
    state = _state()
    proxy.inject(Respond(503, "SlowDown", "Please reduce your request rate."), when=PUT, times=2)
    with pytest.raises(Unavailable) as info:
        store.create(state)
    assert "SlowDown" in str(info.value)
    assert "after 2 attempts" in str(info.value)
    assert proxy.count("PUT", forwarded=False) == 2
    assert proxy.count("PUT", forwarded=True) == 0
    with pytest.raises(NotFound):
        _stored(moto_server_url, s3_bucket, state)


def test_conditional_request_conflict_409_is_retried_with_backoff(
    proxy: FaultProxy, s3_bucket: str, moto_server_url: str
) -> None:
    waits: list[float] = []
    backend = S3Backend(s3_bucket, endpoint_url=proxy.url, sleep=waits.append)
    store = StateStore(backend, "p")
    state = _state()
    conflict = Respond(
        409, "ConditionalRequestConflict", "A conflicting operation occurred. Please retry."
    )
    proxy.inject(conflict, when=PUT, times=2)
    record = store.create(state)
    assert _statuses(proxy.requests("PUT")) == [409, 409, 200]  # botocore did not retry 409
    assert len(waits) == 2
    assert all(0 <= w <= 1.0 for w in waits)
    assert _stored(moto_server_url, s3_bucket, state).write_id == record.write_id


def test_conditional_request_conflict_beyond_the_budget_is_a_conflict(
    proxy: FaultProxy, s3_bucket: str
) -> None:
    waits: list[float] = []
    backend = S3Backend(s3_bucket, endpoint_url=proxy.url, conflict_retries=2, sleep=waits.append)
    proxy.inject(Respond(409, "ConditionalRequestConflict", "retry"), when=PUT, times=3)
    with pytest.raises(Conflict, match="ConditionalRequestConflict") as info:
        backend.write("k/a.json", b"x", CREATE)
    assert "\n" not in str(info.value)
    assert f"s3://{s3_bucket}/k/a.json" in str(info.value)
    assert len(waits) == 2
    assert proxy.count("PUT") == 3
    with pytest.raises(NotFound):
        backend.read("k/a.json")


@pytest.mark.parametrize("first", [True, False], ids=["create", "replace"])
def test_late_duplicate_of_a_timed_out_write_cannot_clobber(
    proxy: FaultProxy, s3_bucket: str, moto_server_url: str, first: bool
) -> None:
    # The first attempt is held in the network past the client's read timeout; botocore
    # re-sends, the retry lands, and then the original arrives late. Its precondition
    # names the old version, so S3 refuses it: no duplicate, no lost update.
    store = StateStore(_backend(proxy, s3_bucket, read_timeout=0.5, attempts=3), "p")
    state = _state()
    previous = None
    if not first:
        previous = store.create(state)
        proxy.clear()
    changed = state.model_copy(update={"count": 3})
    release = threading.Event()
    proxy.inject(Hold(release), when=PUT)
    try:
        if previous is None:
            record = store.create(changed)
        else:
            record = store.save(changed, replaces=previous)
    finally:
        release.set()
    log = proxy.wait_until(
        lambda entries: sum(e.request.method == "PUT" and e.forwarded for e in entries) == 2
    )
    puts = [e for e in log if e.request.method == "PUT"]
    retry, late = puts
    assert retry.request.index > late.request.index  # sent later, arrived first
    assert (retry.status, late.status) == (200, 412)  # the retry landed; the late copy lost
    expected_revision = 1 if first else 2
    assert record.revision == expected_revision
    stored = _stored(moto_server_url, s3_bucket, state)
    assert (stored.revision, stored.write_id, stored.value.count) == (
        expected_revision,
        record.write_id,
        3,
    )


def test_lost_response_to_conditional_delete_is_success(proxy: FaultProxy, s3_bucket: str) -> None:
    backend = _backend(proxy, s3_bucket)
    version = backend.write("k/lease.json", b"lease", CREATE)
    proxy.inject(FORWARD_THEN_DROP, when=matching("DELETE"))
    backend.delete("k/lease.json", if_version=version)
    assert _statuses(proxy.requests("DELETE")) == [None, 404]
    with pytest.raises(NotFound):
        backend.read("k/lease.json")
    # Without a retry in between, a conditional delete of a missing key is NotFound.
    with pytest.raises(NotFound, match=r"k/lease\.json"):
        backend.delete("k/lease.json", if_version=version)


def test_unreachable_endpoint_is_unavailable(s3_bucket: str) -> None:
    from tests.support.servers import free_port

    backend = S3Backend(
        s3_bucket,
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        config=Config(retries={"total_max_attempts": 2}, connect_timeout=2),
    )
    with pytest.raises(Unavailable) as info:
        StateStore(backend, "p").load("t-1", "counter", CounterState)
    message = str(info.value)
    assert "\n" not in message
    assert f"s3://{s3_bucket}/p/t-1/counter.json" in message
    assert "EndpointConnectionError" in message


def test_truncated_read_is_retried(proxy: FaultProxy, s3_bucket: str) -> None:
    store = StateStore(_backend(proxy, s3_bucket), "p")
    state = _state(note="n" * 500)
    store.create(state)
    # The headers arrive, then the body stops short: outside botocore's retry loop, so
    # the backend re-reads (GET is idempotent).
    proxy.inject(ForwardThenTruncate(keep=100), when=matching("GET"))
    assert store.load(state.task_id, "counter", CounterState) == state
    assert proxy.count("GET") == 2


def test_reads_truncated_every_time_are_unavailable(proxy: FaultProxy, s3_bucket: str) -> None:
    store = StateStore(_backend(proxy, s3_bucket), "p")
    state = _state(note="n" * 500)
    store.create(state)
    proxy.rule = lambda request: ForwardThenTruncate(keep=10) if request.method == "GET" else None
    with pytest.raises(Unavailable) as info:
        store.load(state.task_id, "counter", CounterState)
    message = str(info.value)
    assert "\n" not in message
    assert f"s3://{s3_bucket}/p/{state.task_id}/counter.json" in message
    assert proxy.count("GET") == 3  # the first read and two re-reads


# Each fault and whether the write lands: (name, action, times on this save, lands).
_SCHEDULE: list[tuple[str, Any, int, bool]] = [
    ("clean", None, 0, True),
    ("response lost once", FORWARD_THEN_DROP, 1, True),
    ("every response lost", FORWARD_THEN_DROP, 2, True),
    ("request lost once", DROP, 1, True),
    ("every request lost", DROP, 2, False),
    ("500 once", Respond(500, "InternalError", "oops"), 1, True),
    ("503 every time", Respond(503, "ServiceUnavailable", "down"), 2, False),
    ("409 twice", Respond(409, "ConditionalRequestConflict", "retry"), 2, True),
    ("response lost, then request lost", None, 0, True),
]


def test_a_schedule_of_faults_never_loses_or_duplicates_a_write(
    proxy: FaultProxy, s3_bucket: str, moto_server_url: str
) -> None:
    backend = S3Backend(
        s3_bucket,
        endpoint_url=proxy.url,
        sleep=lambda _s: None,
        config=Config(retries={"total_max_attempts": 2}),
    )
    store = StateStore(backend, "p")
    state = _state()
    record = store.create(state)
    revision = record.revision
    for name, action, times, lands in _SCHEDULE:
        if name == "response lost, then request lost":
            # The first attempt lands unanswered, the retry never arrives: botocore gives
            # up, and the store's read finds its own write.
            proxy.inject(FORWARD_THEN_DROP, when=PUT)
            proxy.inject(DROP, when=PUT)
        elif action is not None:
            proxy.inject(action, when=PUT, times=times)
        changed = record.value.model_copy(update={"count": record.value.count + 1})
        try:
            saved = store.save(changed, replaces=record)
        except Unavailable:
            succeeded = False  # the caller knows this update did not happen: record stays
        else:
            succeeded = True
            assert saved.revision == revision + 1, name
            record = saved
        assert proxy.pending() == 0, name
        stored = _stored(moto_server_url, s3_bucket, state)
        assert succeeded is lands, name
        if succeeded:
            revision += 1
            assert (stored.revision, stored.write_id) == (revision, record.write_id), name
        else:
            assert stored.revision == revision, name
        assert stored.value.count == record.value.count, name


def test_a_write_that_lands_after_unavailable_makes_the_next_write_conflict(
    proxy: FaultProxy, s3_bucket: str, moto_server_url: str
) -> None:
    store = StateStore(_backend(proxy, s3_bucket, read_timeout=0.3, attempts=2), "p")
    state = _state()
    first = store.create(state)
    release = threading.Event()
    proxy.inject(Hold(release), when=PUT, times=2)
    try:
        with pytest.raises(Unavailable):
            # Both attempts time out; the read sees the old object.
            store.save(state.model_copy(update={"count": 1}), replaces=first)
    finally:
        release.set()
    log = proxy.wait_until(
        lambda entries: sum(e.request.method == "PUT" and e.forwarded for e in entries) == 3
    )
    # The two held attempts are released together: exactly one lands, in either order.
    statuses = [e.status for e in log if e.request.method == "PUT"]
    assert statuses[0] == 200 and sorted(statuses[1:]) == [200, 412], statuses
    landed = _stored(moto_server_url, s3_bucket, state)
    assert (landed.revision, landed.value.count) == (2, 1)  # it landed late, once
    with pytest.raises(Conflict) as info:
        # `first` is stale now (the late write landed): no blind overwrite.
        store.save(state.model_copy(update={"count": 2}), replaces=first)
    assert info.value.current is not None
    assert info.value.current.write_id == landed.write_id
    assert _stored(moto_server_url, s3_bucket, state).write_id == landed.write_id
    assert first.revision == 1
