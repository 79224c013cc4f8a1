"""Store requests as spans and counts: on memory:// and over HTTP on the moto S3 server,
where each span is one request on the wire."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode

import eleanor_cloud as ec
from eleanor_cloud.backends.s3 import S3Backend, clear_probe_cache
from eleanor_cloud.engine import BaseStage, StageContext
from eleanor_cloud.integrations.otel import TracedBackend, instrument_engine, instrument_store
from eleanor_cloud.testing.conformance.wrappers import CountingBackend
from tests.engine.taskdefs import DemoState, FnStage, Out
from tests.otel.conftest import Telemetry
from tests.s3.helpers import RequestCounter, assume_conditions_honoured


class RState(ec.BaseStageState[ec.SimpleRecordsResult]):
    pass


class Records(BaseStage[RState]):
    """30 records in batches of 10, a checkpoint after every batch."""

    name = "records"

    def run(self, state: RState, ctx: StageContext[RState]) -> None:
        def read(cursor: Any, limit: int) -> ec.Page:
            start = cursor or 0
            items = [{"id": f"r{i}"} for i in range(start, min(start + limit, 30))]
            end = start + len(items)
            return ec.Page(items, cursor=end if end < 30 else None, total=30)

        for batch in ctx.records(read, batch_size=10, checkpoint_every=0):
            for item in batch:
                batch.ok(item)


def test_every_operation_is_one_client_span_and_one_count(telemetry: Telemetry) -> None:
    store = instrument_store(ec.open_store("memory://", prefix="pfx"), **telemetry.providers)
    backend = store.backend
    assert isinstance(backend, TracedBackend)
    assert store.prefix == "pfx"
    assert instrument_store(store) is store  # never traced twice
    version = backend.write("pfx/job/a.json", b"{}", ec.CREATE)
    with pytest.raises(ec.AlreadyExists):
        backend.write("pfx/job/a.json", b"{}", ec.CREATE)
    assert backend.read("pfx/job/a.json")[0] == b"{}"
    with pytest.raises(ec.NotFound):
        backend.read("pfx/job/missing.json")
    assert list(backend.list("pfx/job/")) == ["pfx/job/a.json"]
    backend.delete("pfx/job/a.json", version)

    spans = telemetry.spans()
    assert [s.name for s in spans] == [
        "eleanor.store.write",
        "eleanor.store.write",
        "eleanor.store.read",
        "eleanor.store.read",
        "eleanor.store.list",
        "eleanor.store.delete",
    ]
    assert {s.kind for s in spans} == {SpanKind.CLIENT}
    attrs = [dict(s.attributes or {}) for s in spans]
    assert attrs[0] == {
        "eleanor.store.operation": "write",
        "eleanor.store.key": "pfx/job/a.json",
        "eleanor.store.object": "stage",
        "eleanor.store.backend": "memory://",
        "eleanor.task.id": "job",
        "eleanor.store.bytes": 2,
        "eleanor.store.mode": "create",
        "eleanor.store.outcome": "ok",
    }
    assert [a["eleanor.store.outcome"] for a in attrs] == [
        "ok",
        "already_exists",
        "ok",
        "not_found",
        "ok",
        "ok",
    ]
    assert attrs[2]["eleanor.store.bytes"] == 2
    assert attrs[4]["eleanor.store.keys"] == 1
    # Protocol outcomes (a lost create, an absent key) are not errors.
    assert {s.status.status_code for s in spans} == {StatusCode.UNSET}
    assert telemetry.total("store.requests") == 6
    assert telemetry.total("store.requests", store_outcome="not_found") == 1
    assert telemetry.total("store.duration", store_operation="write") == 2
    assert "http.request.method" not in attrs[0]  # not an HTTP store


def test_a_failing_backend_is_an_error_span(telemetry: Telemetry) -> None:
    class Down(CountingBackend):
        def read(self, key: str) -> Any:
            raise ec.Unavailable("connection reset", key=key, operation="read")

    backend = TracedBackend(Down(ec.open_store("memory://").backend), **telemetry.providers)
    with pytest.raises(ec.Unavailable):
        backend.read("job/a.json")
    (span,) = telemetry.spans()
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "Unavailable"
    assert (span.attributes or {})["eleanor.store.outcome"] == "unavailable"


def test_an_abandoned_listing_still_ends_its_span(telemetry: Telemetry) -> None:
    store = instrument_store(ec.open_store("memory://"), **telemetry.providers)
    for i in range(3):
        store.backend.write(f"job/s{i}.json", b"{}", ec.CREATE)
    telemetry.exporter.clear()
    keys = store.backend.list("job/")
    assert next(keys) == "job/s0.json"
    keys.close()  # type: ignore[attr-defined]
    (span,) = telemetry.spans("eleanor.store.list")
    assert (span.attributes or {})["eleanor.store.keys"] == 1


def test_a_records_stage_checkpoints_are_events_and_latencies(telemetry: Telemetry) -> None:
    counting = CountingBackend(ec.open_store("memory://").backend)
    store = instrument_store(ec.StateStore(counting, "pfx"), **telemetry.providers)
    engine = ec.TaskEngine("job", [Records()], RState, store)
    instrument_engine(engine, **telemetry.providers)
    assert engine.run().status is ec.StageStatus.COMPLETE
    (attempt,) = telemetry.spans("eleanor.stage.attempt")
    checkpoints = [e for e in attempt.events if e.name == "eleanor.stage_checkpointed"]
    assert len(checkpoints) == (attempt.attributes or {})["eleanor.checkpoints"] >= 3
    progress_writes = [
        s
        for s in telemetry.spans("eleanor.store.write")
        if (s.attributes or {})["eleanor.store.object"] == "progress"
    ]
    assert progress_writes
    assert all(telemetry.parent(s) is attempt for s in progress_writes)
    assert telemetry.total("checkpoint.duration", store_object="progress") == len(progress_writes)
    assert telemetry.total("store.requests") == sum(counting.calls.values())


@pytest.fixture
def s3_store(moto_server_url: str, s3_bucket: str) -> Iterator[tuple[S3Backend, RequestCounter]]:
    clear_probe_cache()
    assume_conditions_honoured(moto_server_url, s3_bucket)
    backend = S3Backend(s3_bucket, endpoint_url=moto_server_url, region_name="us-east-1")
    counter = RequestCounter(backend.client)
    yield backend, counter
    clear_probe_cache()


def test_on_the_moto_http_server_each_span_is_one_request(
    telemetry: Telemetry, s3_store: tuple[S3Backend, RequestCounter]
) -> None:
    backend, on_the_wire = s3_store
    counting = CountingBackend(backend)
    store = instrument_store(ec.StateStore(counting, "ops"), **telemetry.providers)
    calls = {"n": 0}

    def flaky(state: DemoState, ctx: Any) -> Out:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("throttled")
        return Out(value=1)

    stages = [FnStage("extract", lambda s, c: Out(value=1)), FnStage("load", flaky)]
    engine = ec.TaskEngine(
        "job-s3", stages, DemoState, store, backoff=ec.Backoff(initial=0, jitter=0)
    )
    instrument_engine(engine, **telemetry.providers)
    assert engine.run().status is ec.StageStatus.COMPLETE

    requests = [s for s in telemetry.spans() if s.name.startswith("eleanor.store.")]
    assert len(requests) == sum(counting.calls.values()) == on_the_wire.total
    assert telemetry.total("store.requests") == on_the_wire.total
    methods = [(s.attributes or {})["http.request.method"] for s in requests]
    assert methods.count("PUT") == on_the_wire.calls["PUT"]
    assert (requests[0].attributes or {})["eleanor.store.backend"].startswith("s3://")
    attempts = telemetry.spans("eleanor.stage.attempt")
    assert [(a.attributes or {})["eleanor.outcome"] for a in attempts] == [
        "completed",
        "retry",
        "completed",
    ]
    assert telemetry.total("retries", stage="load") == 1
    (task,) = telemetry.spans("eleanor.task.run")
    assert all(s.context.trace_id == task.context.trace_id for s in requests)


class StopsOnce(Records):
    """Asks its engine to stop in the middle of the second batch, the first time."""

    engine: Any = None

    def run(self, state: RState, ctx: StageContext[RState]) -> None:
        if self.engine is not None and ctx.attempt == 1:
            engine, self.engine = self.engine, None
            for n, batch in enumerate(ctx.records(read_30, batch_size=10, checkpoint_every=0)):
                if n == 1:
                    engine.request_stop("SIGTERM")
                for item in batch:
                    batch.ok(item)
            return
        super().run(state, ctx)


def read_30(cursor: Any, limit: int) -> ec.Page:
    start = cursor or 0
    items = [{"id": f"r{i}"} for i in range(start, min(start + limit, 30))]
    end = start + len(items)
    return ec.Page(items, cursor=end if end < 30 else None, total=30)


def test_a_suspended_attempt_resumes_in_a_second_span_and_counts_once(
    telemetry: Telemetry,
) -> None:
    store = instrument_store(ec.open_store("memory://"), **telemetry.providers)
    stage = StopsOnce()
    first = ec.TaskEngine("job", [stage], RState, store)
    stage.engine = first
    instrument_engine(first, **telemetry.providers)
    assert not first.run().done
    second = ec.TaskEngine("job", [StopsOnce()], RState, store)
    instrument_engine(second, **telemetry.providers)
    assert second.run().status is ec.StageStatus.COMPLETE
    spans = telemetry.spans("eleanor.stage.attempt")
    got = [
        (
            (s.attributes or {})["eleanor.attempt"],
            (s.attributes or {})["eleanor.stage.resumed"],
            (s.attributes or {})["eleanor.outcome"],
        )
        for s in spans
    ]
    assert got == [(1, False, "suspended"), (1, True, "completed")]
    assert spans[0].status.status_code is StatusCode.UNSET  # a clean stop is no error
    assert telemetry.total("attempts") == 1
    assert [
        (t.attributes or {})["eleanor.outcome"] for t in telemetry.spans("eleanor.task.run")
    ] == [
        "paused",
        "completed",
    ]
