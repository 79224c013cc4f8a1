"""Engine events as spans and metrics: :class:`EngineTracer`, :func:`instrument_engine`.

A run of a task is one span ``eleanor.task.run``; each attempt of a stage is a child
span ``eleanor.stage.attempt`` (from ``stage_started``/``stage_resumed`` to how it
ended). Both are made current on the engine's thread, so the store requests of an
instrumented store (:func:`.instrument_store`) nest under the attempt that made them.
:func:`.instrument_engine` also wraps ``run()`` (:meth:`EngineTracer.task_run`).
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import context, metrics, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from eleanor_cloud.engine.events import EngineEvent
from eleanor_cloud.integrations.otel._common import (
    bounded,
    forget_run,
    get_instruments,
    get_tracer,
    remember_run,
)

__all__ = ["MAX_SPAN_EVENTS", "EngineTracer"]

# Span events (checkpoints, lease news) kept per span; the rest are only counted.
MAX_SPAN_EVENTS = 64
_EPOCH = re.compile(r"epoch (\d+)")
_ERROR_TYPE = re.compile(r"([A-Za-z_][\w.]{0,127}): ")
_STAGE_ENDS = {
    "stage_completed": "completed",
    "stage_retry": "retry",
    "stage_failed": "failed",
    "stage_interrupted": "interrupted",
    "stage_suspended": "suspended",
    "stage_canceled": "canceled",
}
_TASK_ENDS = {
    "task_completed": "completed",
    "task_failed": "failed",
    "task_canceled": "canceled",
    "task_paused": "paused",
}
_ERRORS = frozenset({"retry", "failed", "interrupted", "aborted", "lease_lost"})


@dataclass
class _Open:
    """A span this tracer started, and the context token of the thread it is current on."""

    span: Span
    thread: int
    token: object | None = None
    attempt: int = 0
    events: int = 0
    checkpoints: int = 0
    outcome: str | None = None
    task_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class EngineTracer:
    """Turns one engine's :class:`EngineEvent` stream into spans and metrics.

    Pass ``tracer.on_event`` as ``on_event`` (or let :func:`instrument_engine` chain it
    after yours). Thread-safe: the lease-lost event comes from the renewer thread, an
    interruption from the caller of ``interrupt()``.
    """

    def __init__(
        self,
        task_id: str | None = None,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self.task_id = task_id
        self._tracer = get_tracer(tracer_provider)
        instruments = get_instruments(meter_provider)
        self._attempts, self._retries = instruments.attempts, instruments.retries
        self._lock = threading.RLock()
        self._task: _Open | None = None
        self._owned = 0  # nesting depth of task_run(): the span belongs to the wrapper
        self._stages: dict[str, _Open] = {}
        self._detach_later: list[tuple[int, object]] = []
        self._epoch: int | None = None

    # -- the event stream --------------------------------------------------------------

    def __call__(self, event: EngineEvent) -> None:
        self.on_event(event)

    def on_event(self, event: EngineEvent) -> None:
        with self._lock:
            self._detach_pending()
            kind = event.kind
            if kind in ("lease_acquired", "lease_takeover"):
                self._lease(event)
            elif kind == "task_started":
                if self._task is None:
                    self._task = self._start_task(event.task_id, attach=True)
                self._task.extra["started"] = True
            elif kind in ("stage_started", "stage_resumed"):
                self._start_stage(event)
            elif kind in _STAGE_ENDS:
                self._end_stage(event, _STAGE_ENDS[kind])
            elif kind == "stage_checkpointed":
                self._checkpointed(event)
            elif kind in _TASK_ENDS:
                self._end_task(event, _TASK_ENDS[kind])
            else:  # lease_lost, stage_rolled_back
                target = self._stages.get(event.stage_name or "") or self._task
                self._event(target, event)
                if kind == "lease_lost" and self._task is not None:
                    self._task.outcome = "lease_lost"

    def _lease(self, event: EngineEvent) -> None:
        found = _EPOCH.search(event.message)
        if found is not None:
            self._epoch = int(found.group(1))
        task = self._task
        if task is not None:
            if self._epoch is not None:
                task.span.set_attribute("eleanor.epoch", self._epoch)
            task.span.set_attribute("eleanor.lease.takeover", event.kind == "lease_takeover")
            self._event(task, event)

    def _start_task(self, task_id: str | None, *, attach: bool) -> _Open:
        attrs: dict[str, Any] = {}
        if task_id is not None:
            attrs["eleanor.task.id"] = task_id
        if self._epoch is not None:
            attrs["eleanor.epoch"] = self._epoch
        span = self._tracer.start_span("eleanor.task.run", kind=SpanKind.INTERNAL, attributes=attrs)
        opened = _Open(span, threading.get_ident(), task_id=task_id)
        if attach and span.is_recording():
            opened.token = context.attach(trace.set_span_in_context(span))
        if task_id is not None:
            remember_run(task_id, span.get_span_context())
        return opened

    def _start_stage(self, event: EngineEvent) -> None:
        name = event.stage_name or ""
        stale = self._stages.pop(name, None)
        if stale is not None:  # its end was never reported
            self._close(stale, "abandoned", "")
        attrs: dict[str, Any] = {
            "eleanor.task.id": event.task_id,
            "eleanor.stage": name,
            "eleanor.attempt": event.attempt,
            "eleanor.stage.resumed": event.kind == "stage_resumed",
        }
        if self._epoch is not None:
            attrs["eleanor.epoch"] = self._epoch
        if event.message:
            attrs["eleanor.message"] = bounded(event.message)
        parent = None
        if self._task is not None:
            parent = trace.set_span_in_context(self._task.span)
        span = self._tracer.start_span(
            "eleanor.stage.attempt", context=parent, kind=SpanKind.INTERNAL, attributes=attrs
        )
        opened = _Open(span, threading.get_ident(), attempt=event.attempt)
        if span.is_recording():  # no SDK: nothing to nest under, nothing to attach
            opened.token = context.attach(trace.set_span_in_context(span))
        self._stages[name] = opened

    def _end_stage(self, event: EngineEvent, outcome: str) -> None:
        name = event.stage_name or ""
        opened = self._stages.get(name)
        mine = opened is not None and event.attempt in (0, opened.attempt)
        # An attempt found RUNNING (interrupted_now) ended here, unseen by its own run;
        # a budget spent before a stage could start ("stage_failed") was no attempt.
        if outcome != "suspended" and (mine or outcome == "interrupted"):
            self._attempts.add(1, {"eleanor.stage": name, "eleanor.outcome": outcome})
        if outcome in ("retry", "interrupted") and _status(event) == "RETRY":
            self._retries.add(1, {"eleanor.stage": name})
        if opened is None or not mine:
            self._event(self._task, event)  # no span of ours: an event on the task's
            return
        del self._stages[name]
        if event.batches:
            opened.span.set_attribute("eleanor.batches", event.batches)
        self._close(opened, outcome, event.message, status=_status(event))

    def _checkpointed(self, event: EngineEvent) -> None:
        opened = self._stages.get(event.stage_name or "")
        if opened is None:
            current = trace.get_current_span()  # a shard run's span, say
            if current.is_recording():
                current.add_event("eleanor.checkpoint", _event_attrs(event))
            return
        opened.checkpoints += 1
        opened.span.set_attributes(
            {"eleanor.checkpoints": opened.checkpoints, "eleanor.batches": event.batches}
        )
        self._event(opened, event)

    def _end_task(self, event: EngineEvent, outcome: str) -> None:
        task = self._task
        if task is None:  # e.g. "already complete": nothing ran, one short span
            task = self._start_task(event.task_id, attach=False)
            task.span.set_attribute("eleanor.task.already_complete", True)
            self._finish_task(task, outcome, event)
            return
        self._event(task, event)
        if self._owned:
            if outcome == "completed" and not task.extra.get("started"):
                task.span.set_attribute("eleanor.task.already_complete", True)
            task.outcome = outcome  # the wrapper ends the span when run() returns
            task.extra.update(status=_status(event), message=event.message)
            return
        for stage in list(self._stages.values()):
            self._close(stage, "abandoned", "")
        self._stages.clear()
        self._task = None
        self._finish_task(task, outcome, event)

    def _finish_task(self, task: _Open, outcome: str, event: EngineEvent | None) -> None:
        status = _status(event) if event is not None else task.extra.get("status")
        message = event.message if event is not None else task.extra.get("message", "")
        self._close(task, outcome, message or "", status=status)
        if task.task_id is not None:
            forget_run(task.task_id, task.span.get_span_context())

    # -- spans -------------------------------------------------------------------------

    def _close(
        self, opened: _Open, outcome: str, message: str, *, status: str | None = None
    ) -> None:
        span = opened.span
        if span.is_recording():
            attrs: dict[str, Any] = {"eleanor.outcome": outcome}
            if status is not None:
                attrs["eleanor.status"] = status
            if message:
                attrs["eleanor.message"] = bounded(message)
            if outcome in _ERRORS:
                kind = _ERROR_TYPE.match(message)
                if kind is not None:
                    attrs.setdefault("error.type", kind.group(1))
                span.set_status(Status(StatusCode.ERROR, bounded(message or outcome)))
            span.set_attributes(attrs)
        span.end()
        if opened.token is not None:
            if opened.thread == threading.get_ident():
                context.detach(opened.token)  # type: ignore[arg-type]
            else:  # ended from another thread: detach on its own thread, next time
                self._detach_later.append((opened.thread, opened.token))
            opened.token = None

    def _detach_pending(self) -> None:
        if not self._detach_later:
            return
        me = threading.get_ident()
        for item in [p for p in self._detach_later if p[0] == me][::-1]:
            self._detach_later.remove(item)
            context.detach(item[1])  # type: ignore[arg-type]

    @staticmethod
    def _event(opened: _Open | None, event: EngineEvent) -> None:
        if opened is None:
            return
        opened.events += 1
        if opened.events <= MAX_SPAN_EVENTS and opened.span.is_recording():
            opened.span.add_event(f"eleanor.{event.kind}", _event_attrs(event))

    # -- a whole run (what instrument_engine wraps) ------------------------------------

    @contextlib.contextmanager
    def task_run(self, task_id: str | None = None) -> Iterator[Span]:
        """One ``eleanor.task.run`` span around a call (``run()``), current inside it.

        Ends every span still open when the call is left, by an exception too: the
        attempt in flight with outcome ``aborted`` and the exception's type.
        """
        with self._lock:
            self._detach_pending()
            outer = self._owned == 0
            if outer:
                self._epoch = None  # this run's lease is yet to be taken (if ever)
                self._task = self._start_task(task_id or self.task_id, attach=True)
            self._owned += 1
            task = self._task
            assert task is not None
        try:
            yield task.span
        except BaseException as exc:
            with self._lock:
                self._owned -= 1
                if outer:
                    self._abort(task, exc)
            raise
        with self._lock:
            self._owned -= 1
            if outer:
                self._abort(task, None)

    def _abort(self, task: _Open, exc: BaseException | None) -> None:
        self._detach_pending()
        why = "" if exc is None else bounded(f"{type(exc).__name__}: {exc}")
        for stage in reversed(list(self._stages.values())):
            if exc is not None:
                stage.span.set_attribute("error.type", type(exc).__name__)
            self._close(stage, "aborted" if exc is not None else "abandoned", why)
        self._stages.clear()
        self._task = None
        if exc is not None:
            task.span.set_attribute("error.type", type(exc).__name__)
            if task.outcome is None or task.outcome == "paused":
                task.outcome = "aborted"
            task.extra["message"] = why
        self._finish_task(task, task.outcome or "ended", None)


def _status(event: EngineEvent | None) -> str | None:
    if event is None or event.status is None:
        return None
    return str(event.status.value)


def _event_attrs(event: EngineEvent) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    if event.stage_name:
        attrs["eleanor.stage"] = event.stage_name
    if event.attempt:
        attrs["eleanor.attempt"] = event.attempt
    if event.batches:
        attrs["eleanor.batches"] = event.batches
    if event.message:
        attrs["eleanor.message"] = bounded(event.message)
    return attrs
