"""One CLIENT span and one count per backend request: :func:`instrument_store`.

:class:`TracedBackend` wraps any :class:`~eleanor_cloud.backends.base.ObjectBackend`;
each ``read``/``write``/``delete``/``list`` call (one request on S3) is one span
``eleanor.store.<operation>``, a point on ``eleanor.store.requests`` and on
``eleanor.store.duration``; a write of a stage state or a records progress object is
also a point on ``eleanor.checkpoint.duration``. The span is the current one while the
request runs (an instrumented HTTP client nests under it) and is a child of whatever
span is current on the calling thread. A request made where no span is current (the
engine's lease renewer thread) is a root span linked to its task's run span.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any

from opentelemetry import context, metrics, trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from eleanor_cloud.backends.base import Create, ObjectBackend, Replace, Version, WriteMode
from eleanor_cloud.errors import AlreadyExists, Conflict, NotFound, Unavailable
from eleanor_cloud.integrations.otel._common import (
    active_run,
    bounded,
    get_instruments,
    get_tracer,
    object_kind,
)
from eleanor_cloud.store.state_store import StateStore

__all__ = ["TracedBackend", "instrument_store"]

_METHOD = {"read": "GET", "write": "PUT", "delete": "DELETE", "list": "GET"}
_REMOTE = ("s3://", "gs://", "gcs://", "az://", "abfs://", "http://", "https://")
# Outcomes that are part of the protocol (a missing lease, a lost compare-and-swap):
# recorded, but the span's status stays unset.
_EXPECTED = frozenset({"ok", "not_found", "already_exists", "conflict"})
_CHECKPOINTS = frozenset({"stage", "progress"})


def _outcome(exc: BaseException | None) -> str:
    if exc is None:
        return "ok"
    if isinstance(exc, NotFound):
        return "not_found"
    if isinstance(exc, AlreadyExists):
        return "already_exists"
    if isinstance(exc, Conflict):
        return "conflict"
    if isinstance(exc, Unavailable):
        return "unavailable"
    if isinstance(exc, Exception):
        return "error"
    return "aborted"  # KeyboardInterrupt, SystemExit


def _mode(mode: WriteMode) -> str:
    if isinstance(mode, Create):
        return "create"
    if isinstance(mode, Replace):
        return "replace"
    return "overwrite"


class _Request:
    """One request's span and measurements (a context manager, or ended by hand)."""

    __slots__ = ("_attach", "_start", "_token", "backend", "ended", "kind", "op", "span")

    def __init__(
        self,
        backend: TracedBackend,
        op: str,
        key: str,
        more: dict[str, Any] | None = None,
        *,
        attach: bool = True,
    ) -> None:
        self.backend, self.op, self._attach = backend, op, attach
        self.kind = kind = object_kind(key)
        task_id = backend.task_of(key)
        attrs: dict[str, Any] = {
            "eleanor.store.operation": op,
            "eleanor.store.key": bounded(key),
            "eleanor.store.object": kind,
            "eleanor.store.backend": backend.backend_label,
        }
        if task_id is not None:
            attrs["eleanor.task.id"] = task_id
        if backend.remote:
            attrs["http.request.method"] = _METHOD[op]
        if more:
            attrs.update(more)
        links = None
        if not trace.get_current_span().get_span_context().is_valid:
            run = active_run(task_id)
            if run is not None:
                links = [Link(run, {"eleanor.link": "task_run"})]
        self.span = backend.tracer.start_span(
            f"eleanor.store.{op}", kind=SpanKind.CLIENT, attributes=attrs, links=links
        )
        self._token: object | None = None
        self.ended: dict[str, Any] = {}  # attributes known when the request ends
        self._start = time.perf_counter()

    def __enter__(self) -> _Request:
        # A span that records nothing (no SDK) is not made current: nothing to nest under.
        if self._attach and self.span.is_recording():
            self._token = context.attach(trace.set_span_in_context(self.span))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.finish(exc)
        finally:
            if self._token is not None:
                context.detach(self._token)  # type: ignore[arg-type]

    def finish(self, exc: BaseException | None) -> None:
        elapsed = time.perf_counter() - self._start
        outcome = _outcome(exc)
        span, backend = self.span, self.backend
        if span.is_recording():
            ended = self.ended
            ended["eleanor.store.outcome"] = outcome
            if outcome not in _EXPECTED:
                assert exc is not None
                ended["error.type"] = type(exc).__name__
                span.set_status(Status(StatusCode.ERROR, bounded(f"{type(exc).__name__}: {exc}")))
            span.set_attributes(ended)
        span.end()
        labels = {
            "eleanor.store.operation": self.op,
            "eleanor.store.outcome": outcome,
            "eleanor.store.object": self.kind,
        }
        backend.requests.add(1, labels)
        backend.duration.record(elapsed, labels)
        if self.op == "write" and self.kind in _CHECKPOINTS:
            backend.checkpoint.record(elapsed, labels)


class TracedBackend:
    """An :class:`ObjectBackend` that reports every request of ``inner``.

    ``prefix``: the store prefix its keys start with, so each span can name the task
    (``eleanor.task.id``). Behaviour, results and errors are exactly ``inner``'s.
    """

    def __init__(
        self,
        inner: ObjectBackend,
        *,
        prefix: str = "",
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self.inner = inner
        self._prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.backend_label = bounded(inner.description)
        self.remote = inner.description.startswith(_REMOTE)
        self.tracer = get_tracer(tracer_provider)
        instruments = get_instruments(meter_provider)
        self.requests = instruments.requests
        self.duration = instruments.duration
        self.checkpoint = instruments.checkpoint

    def task_of(self, key: str) -> str | None:
        """The task id a key belongs to (``<prefix>/<task_id>/...``), if any."""
        if not key.startswith(self._prefix):
            return None
        task, sep, _rest = key[len(self._prefix) :].partition("/")
        return task if sep and task and not task.startswith("_") else None

    @property
    def description(self) -> str:
        return self.inner.description

    def read(self, key: str) -> tuple[bytes, Version]:
        with _Request(self, "read", key) as req:
            data, version = self.inner.read(key)
            req.ended["eleanor.store.bytes"] = len(data)
            return data, version

    def write(self, key: str, data: bytes, mode: WriteMode) -> Version:
        more = {"eleanor.store.bytes": len(data), "eleanor.store.mode": _mode(mode)}
        with _Request(self, "write", key, more):
            return self.inner.write(key, data, mode)

    def delete(self, key: str, if_version: Version | None = None) -> None:
        more = {"eleanor.store.mode": "unconditional" if if_version is None else "replace"}
        with _Request(self, "delete", key, more):
            self.inner.delete(key, if_version)

    def list(self, prefix: str, delimiter: str | None = None) -> Iterator[str]:
        # A listing is lazy (pages as it is consumed): its span lasts until the caller
        # has read it to the end or dropped it; it is never the current span.
        req = _Request(self, "list", prefix, attach=False)
        try:
            keys = self.inner.list(prefix, delimiter)
        except BaseException as exc:
            req.finish(exc)
            raise
        return self._listing(req, keys)

    @staticmethod
    def _listing(req: _Request, keys: Iterator[str]) -> Iterator[str]:
        count = 0
        try:
            for key in keys:
                count += 1
                yield key
        except GeneratorExit:
            req.ended["eleanor.store.keys"] = count
            req.finish(None)
            raise
        except BaseException as exc:
            req.ended["eleanor.store.keys"] = count
            req.finish(exc)
            raise
        req.ended["eleanor.store.keys"] = count
        req.finish(None)


def instrument_store(
    store_or_backend: StateStore | ObjectBackend,
    *,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
) -> StateStore:
    """A :class:`StateStore` whose every request is a span and a count.

    Given a store, the new one has the same prefix, writer, clock and pool size over
    a :class:`TracedBackend` of its backend (the original store is unchanged and may
    still be used, untraced). Given a backend, a store with no prefix over it.
    Instrumenting an instrumented store does not trace twice.
    """
    if isinstance(store_or_backend, StateStore):
        store = store_or_backend
        backend = store.backend
        if isinstance(backend, TracedBackend):
            return store
        traced = TracedBackend(
            backend,
            prefix=store.prefix,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
        )
        return StateStore(
            traced,
            store.prefix,
            writer=store._writer,
            clock=store.clock,
            max_workers=store.max_workers,
        )
    backend = store_or_backend
    if not isinstance(backend, TracedBackend):
        backend = TracedBackend(
            backend, tracer_provider=tracer_provider, meter_provider=meter_provider
        )
    return StateStore(backend)
