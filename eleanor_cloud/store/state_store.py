"""StateStore: typed stage states <-> versioned JSON envelopes, over any backend.

One class for every backend. It owns the key layout, the envelope, validation before
any I/O, the cache of the last version seen per key (so a normal save is one
conditional write and no read), and the reconciliation of ambiguous outcomes.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError

from eleanor_cloud import keys
from eleanor_cloud.backends.base import (
    CREATE,
    Create,
    ObjectBackend,
    Overwrite,
    Replace,
    Version,
    WriteMode,
)
from eleanor_cloud.clock import Clock, format_ts, utc_now
from eleanor_cloud.errors import (
    Conflict,
    CorruptState,
    InvalidState,
    NotFound,
    Unavailable,
)
from eleanor_cloud.models import BaseStageState
from eleanor_cloud.store.envelope import (
    LEASE_FORMAT,
    MANIFEST_FORMAT,
    STAGE_FORMAT,
    Envelope,
    decode,
    encode,
)
from eleanor_cloud.store.records import Lease, Record, TaskManifest

__all__ = ["StateStore"]

# A string bound: subscripting a pydantic generic at import time builds a model class.
S = TypeVar("S", bound="BaseStageState[Any]")
M = TypeVar("M", bound=BaseModel)

_CACHE_LIMIT = 10_000


def _default_writer() -> str:
    # Read the pid at write time: a forked child must not sign as its parent.
    return f"{socket.gethostname()}/{os.getpid()}"


class StateStore:
    """Persist stage states, task manifests and leases as versioned envelopes.

    ``prefix`` is prepended to every key. ``writer`` labels each write (default
    ``host/pid``). ``clock`` returns aware UTC datetimes (injectable for tests).
    ``epoch`` is stamped on every write: the engine sets it to its lease epoch.
    ``max_workers`` bounds the thread pool that loads a task's stages concurrently.
    """

    def __init__(
        self,
        backend: ObjectBackend,
        prefix: str = "",
        *,
        writer: str | Callable[[], str] | None = None,
        clock: Clock = utc_now,
        max_workers: int = 8,
    ) -> None:
        if not isinstance(backend, ObjectBackend):
            raise InvalidState(
                f"backend must implement ObjectBackend (read/write/delete/list), got "
                f"{type(backend).__name__}"
            )
        if max_workers < 1:
            raise InvalidState(f"max_workers must be at least 1, got {max_workers}")
        self.backend = backend
        self.prefix = keys.normalize_prefix(prefix)
        self._writer = writer if writer is not None else _default_writer
        self.clock = clock
        self.epoch = 0
        self.max_workers = max_workers
        # The version cache is per thread: a save is a compare-and-swap against the
        # version *this thread* last read or wrote. A cache shared across threads would
        # let thread B's save silently use the version thread A just wrote — a lost update.
        self._local = threading.local()
        # Which revision each seen version carries is a fact, safe to share by threads.
        self._revisions: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._revisions_lock = threading.Lock()

    def __repr__(self) -> str:
        where = f"{self.backend.description} prefix={self.prefix!r}"
        return f"StateStore({where})"

    @property
    def writer(self) -> str:
        return self._writer() if callable(self._writer) else self._writer

    # -- keys --------------------------------------------------------------------------

    def stage_key(self, task_id: str, stage_name: str) -> str:
        return keys.stage_key(self.prefix, task_id, stage_name)

    def manifest_key(self, task_id: str) -> str:
        return keys.manifest_key(self.prefix, task_id)

    def lease_key(self, task_id: str) -> str:
        return keys.lease_key(self.prefix, task_id)

    # -- version cache -----------------------------------------------------------------

    def _thread_cache(self) -> OrderedDict[str, tuple[Version, int]]:
        cache: OrderedDict[str, tuple[Version, int]] | None = getattr(self._local, "cache", None)
        if cache is None:
            cache = self._local.cache = OrderedDict()
        return cache

    def _remember(self, key: str, version: Version, revision: int) -> None:
        with self._revisions_lock:
            self._revisions[(key, version.token)] = revision
            self._revisions.move_to_end((key, version.token))
            while len(self._revisions) > _CACHE_LIMIT:
                self._revisions.popitem(last=False)
        cache = self._thread_cache()
        cache[key] = (version, revision)
        cache.move_to_end(key)
        while len(cache) > _CACHE_LIMIT:
            cache.popitem(last=False)

    def _next_revision(
        self, key: str, mode: Replace | Overwrite, fmt: str, parse: Callable[[dict[str, Any]], M]
    ) -> int:
        """The revision a replace or overwrite writes: one more than the one it updates.

        Any thread may hold a version another thread read (an explicit ``Replace``), so
        revisions are remembered per version store-wide. A version never seen through
        this store costs one read; if that read already shows another version, the
        conditional write could only fail, so it fails now with the current record.
        """
        cached = self._cached(key)
        if isinstance(mode, Replace):
            if cached is not None and cached[0] == mode.version:
                return cached[1] + 1
            with self._revisions_lock:
                known = self._revisions.get((key, mode.version.token))
            if known is not None:
                return known + 1
        elif cached is not None:
            return cached[1] + 1
        try:
            data, version = self.backend.read(key)
        except NotFound:
            if isinstance(mode, Replace):
                raise Conflict(
                    f"{key!r} does not exist (expected version {mode.version.token})",
                    key=key,
                    operation=str(mode),
                ) from None
            return 1
        record = self._decode(key, data, version, fmt, parse)
        if isinstance(mode, Replace) and version != mode.version:
            raise Conflict(
                f"{key!r} is not at version {mode.version.token}",
                key=key,
                operation=str(mode),
                current=record,
            )
        return record.revision + 1

    def _forget_key(self, key: str) -> None:
        self._thread_cache().pop(key, None)

    def _cached(self, key: str) -> tuple[Version, int] | None:
        return self._thread_cache().get(key)

    def known_version(self, task_id: str, stage_name: str) -> Version | None:
        """The version this thread last wrote or read through this store for a stage."""
        entry = self._cached(self.stage_key(task_id, stage_name))
        return entry[0] if entry else None

    def forget(self, task_id: str) -> None:
        """Drop this thread's cached versions of one task (the next save acts as a create)."""
        prefix = keys.task_prefix(self.prefix, task_id)
        cache = self._thread_cache()
        for key in [k for k in cache if k.startswith(prefix)]:
            del cache[key]

    # -- the generic envelope layer ----------------------------------------------------

    def _read(self, key: str, fmt: str, parse: Callable[[dict[str, Any]], M]) -> Record[M]:
        data, version = self.backend.read(key)
        record = self._decode(key, data, version, fmt, parse)
        self._remember(key, version, record.revision)
        return record

    @staticmethod
    def _decode(
        key: str, data: bytes, version: Version, fmt: str, parse: Callable[[dict[str, Any]], M]
    ) -> Record[M]:
        env = decode(data, key=key, expected_format=fmt)
        try:
            value = parse(env.body)
        except CorruptState as exc:
            if exc.key is not None:
                raise
            raise CorruptState(
                f"corrupt object at {key!r}: {exc}", key=key, operation="decode"
            ) from exc
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "<root>"
            raise CorruptState(
                f"corrupt object at {key!r}: field {where!r}: {first['msg']} "
                f"({exc.error_count()} validation error(s))",
                key=key,
                operation="decode",
            ) from exc
        return Record(
            key, value, version, env.revision, env.write_id, env.writer, env.epoch, env.written_at
        )

    def _write(
        self,
        key: str,
        body: dict[str, Any],
        value: M,
        fmt: str,
        mode: WriteMode | None,
        parse: Callable[[dict[str, Any]], M],
    ) -> Record[M]:
        cached = self._cached(key)
        if mode is None:
            mode = cached[0].to_replace() if cached else CREATE
        revision = 1 if isinstance(mode, Create) else self._next_revision(key, mode, fmt, parse)
        env = Envelope(
            fmt, revision, str(uuid.uuid4()), self.writer, self.epoch, format_ts(self.clock()), body
        )
        try:
            data = encode(env)
        except ValueError as exc:  # lone surrogates (UnicodeEncodeError), NaN/Infinity
            raise InvalidState(
                f"cannot store {key!r}: not valid UTF-8 JSON: {exc}", key=key, operation="encode"
            ) from exc
        try:
            version = self.backend.write(key, data, mode)
        except (Conflict, Unavailable) as exc:
            # Ambiguous outcome: a retried request may have applied our write and then
            # been refused as a conflict, or the answer was lost. One read settles it.
            mine = self._reconcile(key, env.write_id, fmt, parse, exc)
            if mine is None:
                raise
            return mine
        self._remember(key, version, revision)
        return Record(
            key, value, version, revision, env.write_id, env.writer, env.epoch, env.written_at
        )

    def _reconcile(
        self,
        key: str,
        write_id: str,
        fmt: str,
        parse: Callable[[dict[str, Any]], M],
        exc: Exception,
    ) -> Record[M] | None:
        try:
            data, version = self.backend.read(key)
        except NotFound:
            return None
        except Unavailable:
            if isinstance(exc, Unavailable):
                return None
            raise
        record = self._decode(key, data, version, fmt, parse)
        if record.write_id == write_id:
            self._remember(key, version, record.revision)
            return record
        if isinstance(exc, Conflict):
            exc.current = record
        return None

    # -- stage states ------------------------------------------------------------------

    @staticmethod
    def _stage_body(state: BaseStageState[Any]) -> dict[str, Any]:
        if not isinstance(state, BaseStageState):
            raise InvalidState(
                f"expected a BaseStageState subclass instance, got {type(state).__name__}"
            )
        keys.validate_task_id(state.task_id)
        keys.validate_stage_name(state.stage_name)
        where = f"{state.task_id}/{state.stage_name}"
        try:
            # warnings="error": a value of the wrong type must fail here, not be
            # written with a serializer warning and fail validation on the next load.
            body: dict[str, Any] = state.model_dump(mode="json", warnings="error")
        except (PydanticSerializationError, ValueError) as exc:
            # ValueError: e.g. UnicodeDecodeError for non-UTF-8 bytes in an Any field.
            raise InvalidState(f"state of {where} is not JSON-serializable: {exc}") from exc
        # A state that could not be read back would be corruption we wrote ourselves:
        # validate the exact body before it leaves the process.
        try:
            again = type(state).model_validate(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "<root>"
            raise InvalidState(
                f"state of {where} is invalid: field {field!r}: {first['msg']}"
            ) from exc
        # ...and read back equal: JSON mode turns NaN into null and bytes into str in
        # untyped fields, so the resumed stage would see other data than it saved.
        if again != state:
            changed = next(
                (
                    name
                    for name in type(state).model_fields
                    if getattr(again, name, None) != getattr(state, name, None)
                ),
                "<extra fields>",
            )
            raise InvalidState(
                f"state of {where} would not read back as saved: field {changed!r} changes "
                "in JSON (NaN/Infinity, bytes, tuples or sets in untyped fields)"
            )
        return body

    @staticmethod
    def _stage_parser(
        state_class: type[S], task_id: str, stage_name: str
    ) -> Callable[[dict[str, Any]], S]:
        def parse(body: dict[str, Any]) -> S:
            state = state_class.model_validate(body)
            if state.task_id != task_id or state.stage_name != stage_name:
                raise CorruptState(
                    f"it holds the state of {state.task_id!r}/{state.stage_name!r}, not "
                    f"{task_id!r}/{stage_name!r}",
                    operation="decode",
                )
            return state

        return parse

    def create(self, state: S) -> Record[S]:
        """Write a stage state that must not exist yet (``AlreadyExists`` otherwise)."""
        return self.save(state, mode=CREATE)

    def save(self, state: S, *, mode: WriteMode | None = None) -> Record[S]:
        """Write a stage state as a compare-and-swap against the version last seen.

        With no cached version the write is a create. ``Conflict`` (with
        ``.current``, the record now stored) means somebody else wrote in between:
        load, re-apply, save again. Pass ``mode`` to override (``OVERWRITE`` for an
        unconditional write).
        """
        body = self._stage_body(state)
        key = self.stage_key(state.task_id, state.stage_name)
        parse = self._stage_parser(type(state), state.task_id, state.stage_name)
        return self._write(key, body, state, STAGE_FORMAT, mode, parse)

    def load_record(self, task_id: str, stage_name: str, state_class: type[S]) -> Record[S]:
        """Read one stage state with its version; ``NotFound`` names task and stage."""
        key = self.stage_key(task_id, stage_name)
        try:
            return self._read(
                key, STAGE_FORMAT, self._stage_parser(state_class, task_id, stage_name)
            )
        except NotFound as exc:
            raise NotFound(
                f"no state for stage {stage_name!r} of task {task_id!r} "
                f"in {self.backend.description}",
                key=key,
                operation="load",
            ) from exc

    def load(self, task_id: str, stage_name: str, state_class: type[S]) -> S:
        """Read one stage state."""
        return self.load_record(task_id, stage_name, state_class).value

    def delete(self, task_id: str, stage_name: str, *, if_version: Version | None = None) -> None:
        """Delete one stage state (only at ``if_version`` when given)."""
        key = self.stage_key(task_id, stage_name)
        self.backend.delete(key, if_version)
        self._forget_key(key)

    def load_task_records(self, task_id: str, state_class: type[S]) -> dict[str, Record[S]]:
        """All stage states of a task: one LIST, then the GETs on a small thread pool."""
        prefix = keys.task_prefix(self.prefix, task_id)
        names = [
            n
            for n in (keys.stage_name_from_key(k) for k in self.backend.list(prefix))
            if n is not None
        ]

        def load_one(name: str) -> Record[S] | None:
            try:
                return self.load_record(task_id, name, state_class)
            except NotFound:  # deleted between LIST and GET
                return None

        if len(names) <= 1 or self.max_workers == 1:
            loaded = [load_one(n) for n in names]
        else:
            # Imported here: the thread pool machinery is not free, and a cold Lambda
            # that only saves one state should not pay for it.
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(min(self.max_workers, len(names))) as pool:
                loaded = list(pool.map(load_one, names))
            # The pool threads cached those versions; the caller's thread is the one
            # that will save, so it must know them.
            for record in loaded:
                if record is not None:
                    self._remember(record.key, record.version, record.revision)
        return {n: r for n, r in zip(names, loaded, strict=True) if r is not None}

    def load_task(self, task_id: str, state_class: type[S]) -> dict[str, S]:
        """All stored stage states of a task by stage name (missing stages are absent)."""
        return {n: r.value for n, r in self.load_task_records(task_id, state_class).items()}

    # -- tasks -------------------------------------------------------------------------

    def create_manifest(self, manifest: TaskManifest) -> Record[TaskManifest]:
        """Write a task's manifest; ``AlreadyExists`` if the task was bound before."""
        keys.validate_task_id(manifest.task_id)
        for name in manifest.stages:
            keys.validate_stage_name(name)
        return self._write(
            self.manifest_key(manifest.task_id),
            manifest.model_dump(mode="json"),
            manifest,
            MANIFEST_FORMAT,
            CREATE,
            TaskManifest.model_validate,
        )

    def load_manifest_record(self, task_id: str) -> Record[TaskManifest]:
        key = self.manifest_key(task_id)
        try:
            return self._read(key, MANIFEST_FORMAT, TaskManifest.model_validate)
        except NotFound as exc:
            raise NotFound(
                f"no task {task_id!r} in {self.backend.description}",
                key=key,
                operation="load_manifest",
            ) from exc

    def load_manifest(self, task_id: str) -> TaskManifest:
        """The task's manifest; ``NotFound`` if the task was never bound."""
        return self.load_manifest_record(task_id).value

    def list_tasks(self) -> Iterator[str]:
        """Task ids in the store, in lexicographic order (streamed page by page)."""
        base = self.prefix + "/" if self.prefix else ""
        for entry in self.backend.list(base, delimiter="/"):
            if entry.endswith("/"):
                task_id = entry[len(base) : -1]
                if keys.is_valid_task_id(task_id):  # foreign folders are not tasks
                    yield task_id

    def delete_task(self, task_id: str) -> int:
        """Delete every object of a task, the lease last; return how many were deleted."""
        prefix = keys.task_prefix(self.prefix, task_id)
        found = list(self.backend.list(prefix))
        lease = self.lease_key(task_id)
        ordered = [k for k in found if k != lease] + [k for k in found if k == lease]
        for key in ordered:
            self.backend.delete(key)
        self.forget(task_id)
        return len(ordered)

    # -- leases (policy lives in the engine; the store only persists them) -------------

    def load_lease(self, task_id: str) -> Record[Lease] | None:
        """The task's lease record, or ``None`` if there is none."""
        try:
            return self._read(self.lease_key(task_id), LEASE_FORMAT, Lease.model_validate)
        except NotFound:
            return None

    def write_lease(self, lease: Lease, mode: WriteMode) -> Record[Lease]:
        """Conditionally write the lease; the engine decides the mode."""
        keys.validate_task_id(lease.task_id)
        return self._write(
            self.lease_key(lease.task_id),
            lease.model_dump(mode="json"),
            lease,
            LEASE_FORMAT,
            mode,
            Lease.model_validate,
        )

    def delete_lease(self, task_id: str, if_version: Version | None) -> None:
        key = self.lease_key(task_id)
        self.backend.delete(key, if_version)
        self._forget_key(key)
