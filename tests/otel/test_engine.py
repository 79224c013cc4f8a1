"""Real TaskEngine runs on memory://, traced: span tree, attributes, retries, failures,
interruptions from another thread and from the keyboard, and the metrics."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import StatusCode

import eleanor_cloud as ec
from eleanor_cloud.engine import Backoff
from eleanor_cloud.integrations.otel import (
    MAX_MESSAGE,
    EngineTracer,
    instrument_engine,
    instrument_store,
)
from eleanor_cloud.testing.conformance.wrappers import CountingBackend
from tests.engine.taskdefs import DemoState, FnStage, Out
from tests.otel.conftest import Telemetry

NO_WAIT = Backoff(initial=0, jitter=0)


def done(state: DemoState, ctx: Any) -> Out:
    return Out(value=1)


def traced(
    telemetry: Telemetry, stages: list[FnStage], task_id: str = "job", **kw: Any
) -> tuple[ec.TaskEngine[DemoState], CountingBackend]:
    counting = CountingBackend(ec.open_store("memory://").backend)
    store = instrument_store(ec.StateStore(counting, "pfx"), **telemetry.providers)
    kw.setdefault("backoff", NO_WAIT)
    engine = ec.TaskEngine(task_id, stages, DemoState, store, **kw)
    instrument_engine(engine, **telemetry.providers)
    return engine, counting


def test_a_run_is_one_task_span_with_a_child_per_attempt_and_requests_under_them(
    telemetry: Telemetry,
) -> None:
    engine, counting = traced(telemetry, [FnStage("extract", done), FnStage("load", done)])
    assert engine.run().status is ec.StageStatus.COMPLETE

    (task,) = telemetry.spans("eleanor.task.run")
    assert task.parent is None
    assert task.attributes is not None
    assert task.attributes["eleanor.task.id"] == "job"
    assert task.attributes["eleanor.epoch"] == 1
    assert task.attributes["eleanor.outcome"] == "completed"
    assert task.attributes["eleanor.status"] == "COMPLETE"
    attempts = telemetry.spans("eleanor.stage.attempt")
    assert [(a.attributes or {}).get("eleanor.stage") for a in attempts] == ["extract", "load"]
    for a in attempts:
        assert telemetry.parent(a) is task
        attrs = dict(a.attributes or {})
        assert attrs["eleanor.attempt"] == 1
        assert attrs["eleanor.epoch"] == 1
        assert attrs["eleanor.task.id"] == "job"
        assert attrs["eleanor.status"] == "COMPLETE"
        assert a.status.status_code is StatusCode.UNSET
        assert a.end_time is not None and task.end_time is not None
        assert task.start_time is not None and a.start_time is not None
        assert task.start_time <= a.start_time and a.end_time <= task.end_time
    requests = [s for s in telemetry.spans() if s.name.startswith("eleanor.store.")]
    # Every request of the run, binding and lease release included, is in the tree.
    assert len(requests) == counting_total(counting) >= 2 * 2 + 3
    assert {telemetry.parent(r).name for r in requests} == {  # type: ignore[union-attr]
        "eleanor.task.run",
        "eleanor.stage.attempt",
    }
    # The COMPLETE write happens inside the attempt that made it.
    for a in attempts:
        own = f"pfx/job/{(a.attributes or {})['eleanor.stage']}.json"
        kids = [
            (k.attributes or {}).get("eleanor.store.mode")
            for k in requests
            if telemetry.parent(k) is a and (k.attributes or {})["eleanor.store.key"] == own
        ]
        assert kids == ["replace"]
    assert telemetry.total("attempts", outcome="completed") == 2
    assert telemetry.total("retries") == 0
    assert telemetry.total("store.requests") == counting_total(counting)
    assert telemetry.total("checkpoint.duration") == 4  # RUNNING + COMPLETE per stage
    assert not trace.get_current_span().get_span_context().is_valid  # nothing leaked


def counting_total(counting: CountingBackend) -> int:
    return sum(counting.calls.values())


def test_a_retry_and_a_failing_stage(telemetry: Telemetry) -> None:
    calls = {"n": 0}

    def flaky(state: DemoState, ctx: Any) -> Out:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ValueError("first time unlucky")
        return Out(value=2)

    def broken(state: DemoState, ctx: Any) -> Out:
        raise KeyError("no such column")

    stages = [FnStage("flaky", flaky), FnStage("broken", broken)]
    engine, _ = traced(telemetry, stages, max_attempts=2)
    assert engine.run().status is ec.StageStatus.ERROR

    attempts = [(a.attributes or {}) for a in telemetry.spans("eleanor.stage.attempt")]
    got = [(a["eleanor.stage"], a["eleanor.attempt"], a["eleanor.outcome"]) for a in attempts]
    assert got == [
        ("flaky", 1, "retry"),
        ("flaky", 2, "completed"),
        ("broken", 1, "retry"),
        ("broken", 2, "failed"),
    ]
    first = telemetry.spans("eleanor.stage.attempt")[0]
    assert first.status.status_code is StatusCode.ERROR
    assert first.status.description == "ValueError: first time unlucky"
    assert (first.attributes or {})["error.type"] == "ValueError"
    last = telemetry.spans("eleanor.stage.attempt")[-1]
    assert (last.attributes or {})["error.type"] == "KeyError"
    assert (last.attributes or {})["eleanor.status"] == "ERROR"
    (task,) = telemetry.spans("eleanor.task.run")
    assert task.status.status_code is StatusCode.ERROR
    assert (task.attributes or {})["eleanor.outcome"] == "failed"
    assert telemetry.total("retries", stage="flaky") == 1
    assert telemetry.total("retries", stage="broken") == 1
    assert telemetry.total("attempts", stage="broken", outcome="failed") == 1
    assert telemetry.total("attempts") == 4


def test_the_users_own_handler_still_gets_every_event(telemetry: Telemetry) -> None:
    seen: list[str] = []
    engine, _ = traced(telemetry, [FnStage("a", done)], on_event=lambda e: seen.append(e.kind))
    assert instrument_engine(engine, **telemetry.providers) is instrument_engine(engine)
    engine.run()
    assert seen == [
        "lease_acquired",
        "task_started",
        "stage_started",
        "stage_completed",
        "task_completed",
    ]
    assert len(telemetry.spans("eleanor.stage.attempt")) == 1  # chained once, not twice


def test_a_keyboard_interrupt_in_a_stage_ends_every_span(telemetry: Telemetry) -> None:
    def ctrl_c(state: DemoState, ctx: Any) -> Out:
        raise KeyboardInterrupt

    engine, _ = traced(telemetry, [FnStage("a", done), FnStage("b", ctrl_c)])
    with pytest.raises(KeyboardInterrupt):
        engine.run()
    (task,) = telemetry.spans("eleanor.task.run")
    b = telemetry.spans("eleanor.stage.attempt")[-1]
    for span in (task, b):
        assert span.end_time is not None
        assert span.status.status_code is StatusCode.ERROR
        assert (span.attributes or {})["error.type"] == "KeyboardInterrupt"
        assert (span.attributes or {})["eleanor.outcome"] == "aborted"
    # The lease was released on the way out, inside the run's span.
    release = telemetry.spans("eleanor.store.write")[-1]
    assert (release.attributes or {})["eleanor.store.object"] == "lease"
    assert release.end_time is not None and task.end_time is not None
    assert release.end_time <= task.end_time
    assert not trace.get_current_span().get_span_context().is_valid


def test_an_interrupt_from_another_thread_ends_the_attempt_span(
    telemetry: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    started, release = threading.Event(), threading.Event()

    def waits(state: DemoState, ctx: Any) -> Out:
        started.set()
        assert release.wait(10)
        return Out(value=1)

    engine, _ = traced(telemetry, [FnStage("slow", waits)])
    result: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: result.update(summary=engine.run()))
    runner.start()
    assert started.wait(10)
    assert engine.interrupt("container stopping")
    release.set()
    runner.join(10)
    assert result["summary"].done is False
    (attempt,) = telemetry.spans("eleanor.stage.attempt")
    assert (attempt.attributes or {})["eleanor.outcome"] == "interrupted"
    assert (attempt.attributes or {})["eleanor.status"] == "RETRY"
    assert "container stopping" in (attempt.attributes or {})["eleanor.message"]
    (task,) = telemetry.spans("eleanor.task.run")
    assert (task.attributes or {})["eleanor.outcome"] == "paused"
    assert telemetry.total("retries", stage="slow") == 1
    # The attempt's context was detached on the engine's own thread, not the caller's.
    assert [r for r in caplog.records if "detach" in r.getMessage()] == []


def test_messages_are_bounded(telemetry: Telemetry) -> None:
    def loud(state: DemoState, ctx: Any) -> Out:
        raise RuntimeError("x" * 10_000)

    engine, _ = traced(telemetry, [FnStage("loud", loud)], max_attempts=1)
    engine.run()
    (attempt,) = telemetry.spans("eleanor.stage.attempt")
    message = (attempt.attributes or {})["eleanor.message"]
    assert len(message) <= MAX_MESSAGE and message.startswith("RuntimeError: xxx")
    assert attempt.status.description is not None
    assert len(attempt.status.description) <= MAX_MESSAGE
    for span in telemetry.spans():
        for value in (span.attributes or {}).values():
            assert not isinstance(value, str) or len(value) <= MAX_MESSAGE
        for event in span.events:
            for value in (event.attributes or {}).values():
                assert not isinstance(value, str) or len(value) <= MAX_MESSAGE


def test_running_a_finished_task_again_is_one_short_span(telemetry: Telemetry) -> None:
    engine, _ = traced(telemetry, [FnStage("a", done)])
    engine.run()
    telemetry.exporter.clear()
    engine.run()
    (task,) = telemetry.spans("eleanor.task.run")
    assert (task.attributes or {})["eleanor.outcome"] == "completed"
    assert (task.attributes or {})["eleanor.task.already_complete"] is True
    assert "eleanor.epoch" not in (task.attributes or {})  # no lease was taken
    assert telemetry.spans("eleanor.stage.attempt") == []
    reads = telemetry.spans("eleanor.store.read")
    assert reads and all(telemetry.parent(r) is task for r in reads)


def test_the_tracer_alone_as_on_event(telemetry: Telemetry) -> None:
    """Without wrapping run(): the task span runs from task_started to the task's end."""
    tracer = EngineTracer("job", **telemetry.providers)
    store = instrument_store(ec.open_store("memory://"), **telemetry.providers)
    engine = ec.TaskEngine("job", [FnStage("a", done)], DemoState, store, on_event=tracer)
    engine.run()
    (task,) = telemetry.spans("eleanor.task.run")
    (attempt,) = telemetry.spans("eleanor.stage.attempt")
    assert telemetry.parent(attempt) is task
    assert (task.attributes or {})["eleanor.epoch"] == 1
    assert not trace.get_current_span().get_span_context().is_valid


def test_lease_renewals_are_root_spans_linked_to_the_run(telemetry: Telemetry) -> None:
    renewed = threading.Event()

    class OnRenewal(SpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:
            attrs = span.attributes or {}
            if attrs.get("eleanor.store.object") == "lease" and span.parent is None:
                renewed.set()  # a renewal: no span is current on the renewer's thread

    telemetry.tracer_provider.add_span_processor(OnRenewal())

    def waits_for_a_renewal(state: DemoState, ctx: Any) -> Out:
        assert renewed.wait(10)
        return Out(value=1)

    engine, _ = traced(
        telemetry,
        [FnStage("a", waits_for_a_renewal)],
        lease_ttl=2.0,
        renew_interval=0.05,
        clock_skew_tolerance=0.0,
    )
    runner = threading.Thread(target=engine.run)
    runner.start()
    runner.join(20)
    (task,) = telemetry.spans("eleanor.task.run")
    renewals = [
        s
        for s in telemetry.spans("eleanor.store.write")
        if (s.attributes or {}).get("eleanor.store.object") == "lease" and s.parent is None
    ]
    assert renewals
    for span in renewals:
        assert [link.context.span_id for link in span.links] == [task.context.span_id]
        assert (span.attributes or {})["eleanor.task.id"] == "job"


def test_no_providers_means_the_global_no_op_ones(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    store = instrument_store(ec.open_store("memory://"))
    engine = ec.TaskEngine("job", [FnStage("a", done)], DemoState, store)
    instrument_engine(engine)
    assert engine.run().status is ec.StageStatus.COMPLETE


def test_a_budget_spent_before_a_stage_starts_is_no_attempt(telemetry: Telemetry) -> None:
    calls = {"n": 0}

    def once_unlucky(state: DemoState, ctx: Any) -> Out:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("unlucky")
        return Out(value=1)

    engine, _ = traced(
        telemetry,
        [FnStage("a", once_unlucky), FnStage("b", done)],
        retry_policy=ec.RetryPolicy.GLOBAL,
        max_attempts=2,
    )
    assert engine.run().status is ec.StageStatus.ERROR
    attempts = telemetry.spans("eleanor.stage.attempt")
    assert [(a.attributes or {})["eleanor.stage"] for a in attempts] == ["a", "a"]
    assert telemetry.total("attempts") == 2
    (task,) = telemetry.spans("eleanor.task.run")
    assert "eleanor.stage_failed" in [e.name for e in task.events]
    assert (task.attributes or {})["eleanor.outcome"] == "failed"


def test_a_lease_held_elsewhere_ends_the_run_span_with_its_type(telemetry: Telemetry) -> None:
    started, release = threading.Event(), threading.Event()

    def holds(state: DemoState, ctx: Any) -> Out:
        started.set()
        assert release.wait(10)
        return Out(value=1)

    first, _ = traced(telemetry, [FnStage("a", holds)])
    runner = threading.Thread(target=first.run)
    runner.start()
    try:
        assert started.wait(10)
        second = ec.TaskEngine("job", [FnStage("a", done)], DemoState, first.store)
        instrument_engine(second, **telemetry.providers)
        with pytest.raises(ec.LeaseHeld):
            second.run()
    finally:
        release.set()
        runner.join(10)
    held = [
        s
        for s in telemetry.spans("eleanor.task.run")
        if (s.attributes or {}).get("error.type") == "LeaseHeld"
    ]
    assert len(held) == 1
    assert held[0].status.status_code is StatusCode.ERROR
    assert (held[0].attributes or {})["eleanor.outcome"] == "aborted"


def test_a_cancel_during_a_stage_ends_both_spans_canceled(telemetry: Telemetry) -> None:
    from eleanor_cloud.engine import cancel_task

    def cancels_itself(state: DemoState, ctx: Any) -> Out:
        cancel_task(engine.store, "job")
        return Out(value=1)

    engine, _ = traced(telemetry, [FnStage("a", cancels_itself)])
    assert engine.run().status is ec.StageStatus.CANCELED
    (attempt,) = telemetry.spans("eleanor.stage.attempt")
    assert (attempt.attributes or {})["eleanor.outcome"] == "canceled"
    (task,) = telemetry.spans("eleanor.task.run")
    assert (task.attributes or {})["eleanor.outcome"] == "canceled"
    assert telemetry.total("attempts", outcome="canceled") == 1
