"""StateStore: typed stage states <-> versioned JSON envelopes, over any backend.

One class for every backend. It owns the key layout, the envelope, validation before
any I/O and the reconciliation of ambiguous outcomes.

Versions travel with the data: every read returns a :class:`Record` carrying the
version it was read at, and every update names the record it replaces
(``save(state, replaces=record)``), as obstore's ``UpdateVersion`` in / ``PutResult``
out. The store keeps no memory of what anybody last saw, so a stale copy can never be
saved silently, whichever handle or thread it comes through, and a normal save is one
conditional write with no read. The epoch stamped on a write is an argument too: no
mutable state on a shared object.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from pydantic import BaseModel

from eleanor_cloud import keys
from eleanor_cloud.backends.base import CREATE, ObjectBackend, Replace, WriteMode
from eleanor_cloud.clock import Clock, format_ts, utc_now
from eleanor_cloud.errors import Conflict, InvalidState, NotFound, Unavailable
from eleanor_cloud.models import BaseStageState
from eleanor_cloud.store.codec import decode_record, stage_body, stage_parser
from eleanor_cloud.store.envelope import (
    LEASE_FORMAT,
    MANIFEST_FORMAT,
    STAGE_FORMAT,
    Envelope,
    encode,
)
from eleanor_cloud.store.records import Lease, Record, TaskManifest

__all__ = ["StateStore"]

# A string bound: subscripting a pydantic generic at import time builds a model class.
S = TypeVar("S", bound="BaseStageState[Any]")
M = TypeVar("M", bound=BaseModel)


def _default_writer() -> str:
    # Read the pid at write time: a forked child must not sign as its parent.
    return f"{socket.gethostname()}/{os.getpid()}"


def _check_epoch(epoch: object) -> int:
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise InvalidState(f"epoch must be an int >= 0, got {epoch!r}")
    return epoch


class StateStore:
    """Persist stage states, task manifests and leases as versioned envelopes.

    ``prefix`` is prepended to every key. ``writer`` labels each write (default
    ``host/pid``). ``clock`` returns aware UTC datetimes (injectable for tests).
    ``max_workers`` bounds the thread pool that loads a task's stages concurrently.
    A store holds no per-caller state: share one between threads freely.
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
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise InvalidState(f"max_workers must be an int >= 1, got {max_workers!r}")
        self.backend = backend
        self.prefix = keys.normalize_prefix(prefix)
        self._writer = writer if writer is not None else _default_writer
        self.clock = clock
        self.max_workers = max_workers

    def __repr__(self) -> str:
        return f"StateStore({self.backend.description} prefix={self.prefix!r})"

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

    # -- the generic envelope layer ----------------------------------------------------

    def _read(self, key: str, fmt: str, parse: Callable[[dict[str, Any]], M]) -> Record[M]:
        data, version = self.backend.read(key)
        return decode_record(key, data, version, fmt, parse)

    def _write(
        self,
        key: str,
        body: dict[str, Any],
        value: M,
        fmt: str,
        replaces: Record[Any] | None,
        epoch: int,
        parse: Callable[[dict[str, Any]], M],
    ) -> Record[M]:
        mode: WriteMode = CREATE
        revision = 1
        if replaces is not None:
            if not isinstance(replaces, Record):
                raise InvalidState(
                    f"replaces must be the Record read or written for {key!r} (or None to "
                    f"create it), got {type(replaces).__name__}"
                )
            if replaces.key != key:
                raise InvalidState(
                    f"replaces is the record of {replaces.key!r}, but the write is to {key!r}"
                )
            mode, revision = Replace(replaces.version), replaces.revision + 1
        env = Envelope(
            fmt, revision, str(uuid.uuid4()), self.writer, epoch, format_ts(self.clock()), body
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
        record = decode_record(key, data, version, fmt, parse)
        if record.write_id == write_id:
            return record
        if isinstance(exc, Conflict):
            exc.current = record
        return None

    # -- other documents (a records stage's progress: see .documents) -----------------

    def read_document(self, key: str, fmt: str, parse: Callable[[dict[str, Any]], M]) -> Record[M]:
        """A typed envelope at ``key`` (under this store's prefix); ``NotFound``."""
        return self._read(self._own(key), fmt, parse)

    def write_document(
        self, key: str, value: M, fmt: str, *, replaces: Record[Any] | None, epoch: int
    ) -> Record[M]:
        """Create or compare-and-swap a typed envelope at ``key`` at ``epoch``."""
        body = value.model_dump(mode="json")
        return self._write(
            self._own(key),
            body,
            value,
            fmt,
            replaces,
            _check_epoch(epoch),
            type(value).model_validate,
        )

    def _own(self, key: str) -> str:
        if self.prefix and not key.startswith(self.prefix + "/"):
            raise InvalidState(f"{key!r} is not under this store's prefix {self.prefix!r}")
        return key

    # -- stage states ------------------------------------------------------------------

    def create(self, state: S, *, epoch: int = 0) -> Record[S]:
        """Write a stage state that must not exist yet (``AlreadyExists`` otherwise)."""
        return self.save(state, replaces=None, epoch=epoch)

    def save(
        self, state: S, *, replaces: Record[Any] | None, epoch: int | None = None
    ) -> Record[S]:
        """Write a stage state as a compare-and-swap against the record it replaces.

        ``replaces`` is the record this state was derived from (what ``load_record``,
        ``create`` or an earlier ``save`` returned), or ``None`` to create the object.
        ``Conflict`` (with ``.current``, the record now stored) means somebody wrote in
        between: load, re-apply, save again. ``epoch`` is stamped into the envelope
        (the engine passes its lease epoch); by default the replaced record's, or 0.
        """
        body = stage_body(state)
        key = self.stage_key(state.task_id, state.stage_name)
        if epoch is None:
            epoch = replaces.epoch if isinstance(replaces, Record) else 0
        parse = stage_parser(type(state), state.task_id, state.stage_name)
        return self._write(key, body, state, STAGE_FORMAT, replaces, _check_epoch(epoch), parse)

    def load_record(self, task_id: str, stage_name: str, state_class: type[S]) -> Record[S]:
        """Read one stage state with its version; ``NotFound`` names task and stage."""
        key = self.stage_key(task_id, stage_name)
        try:
            return self._read(key, STAGE_FORMAT, stage_parser(state_class, task_id, stage_name))
        except NotFound as exc:
            raise NotFound(
                f"no state for stage {stage_name!r} of task {task_id!r} "
                f"in {self.backend.description}",
                key=key,
                operation="load",
            ) from exc

    def load(self, task_id: str, stage_name: str, state_class: type[S]) -> S:
        """Read one stage state (use :meth:`load_record` to update it afterwards)."""
        return self.load_record(task_id, stage_name, state_class).value

    def delete(self, task_id: str, stage_name: str) -> None:
        """Delete one stage state (a missing one is not an error)."""
        self.backend.delete(self.stage_key(task_id, stage_name))

    def load_task_records(self, task_id: str, state_class: type[S]) -> dict[str, Record[S]]:
        """All stage states of a task: one LIST, then the GETs on a small thread pool."""
        prefix = keys.task_prefix(self.prefix, task_id)
        # One level only: a records stage's folder (progress, failed chunks) rolls up
        # into one "<stage>/" entry, so the LIST stays small whatever the record count.
        names = [
            n
            for n in (
                keys.stage_name_from_key(k)
                for k in self.backend.list(prefix, delimiter="/")
                if not k.endswith("/")
            )
            if n is not None
        ]
        return self.load_stage_records(task_id, names, state_class)

    def load_stage_records(
        self, task_id: str, names: list[str] | tuple[str, ...], state_class: type[S]
    ) -> dict[str, Record[S]]:
        """The named stages' records (absent ones are left out), with no LIST."""

        def load_one(name: str) -> Record[S] | None:
            try:
                return self.load_record(task_id, name, state_class)
            except NotFound:  # deleted between LIST and GET, or never written
                return None

        if len(names) <= 1 or self.max_workers == 1:
            loaded = [load_one(n) for n in names]
        else:
            # Imported here: the thread pool machinery is not free, and a cold Lambda
            # that only saves one state should not pay for it.
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(min(self.max_workers, len(names))) as pool:
                loaded = list(pool.map(load_one, names))
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
            None,
            0,
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

    def list_tasks(self, id_prefix: str = "") -> Iterator[str]:
        """Task ids in the store (starting with ``id_prefix``), in lexicographic order,
        streamed page by page."""
        base = self.prefix + "/" if self.prefix else ""
        for entry in self.backend.list(base + id_prefix, delimiter="/"):
            if entry.endswith("/"):
                task_id = entry[len(base) : -1]
                if keys.is_valid_task_id(task_id):  # foreign folders are not tasks
                    yield task_id

    def delete_task(self, task_id: str) -> int:
        """Delete every object of a task but its lease; return how many were deleted.

        The lease object stays so epochs only grow for the life of the task id: a
        holder of the deleted task can never look current to a later one. This is the
        raw operation: ``eleanor_cloud.engine.delete_task`` first takes the lease (so
        no live holder is deleted under) and leaves it as a tombstone.
        """
        prefix = keys.task_prefix(self.prefix, task_id)
        lease = self.lease_key(task_id)
        found = [k for k in self.backend.list(prefix) if k != lease]
        for key in found:
            self.backend.delete(key)
        return len(found)

    # -- leases (policy lives in the engine; the store only persists them) -------------

    def load_lease(self, task_id: str, *, key: str | None = None) -> Record[Lease] | None:
        """The task's lease record (or the one at ``key``: a shard's), or ``None``."""
        where = self.lease_key(task_id) if key is None else self._own(key)
        try:
            return self._read(where, LEASE_FORMAT, Lease.model_validate)
        except NotFound:
            return None

    def write_lease(
        self, lease: Lease, *, replaces: Record[Lease] | None, key: str | None = None
    ) -> Record[Lease]:
        """Create the lease (``replaces=None``) or compare-and-swap it; epoch = lease's."""
        keys.validate_task_id(lease.task_id)
        return self._write(
            self.lease_key(lease.task_id) if key is None else self._own(key),
            lease.model_dump(mode="json"),
            lease,
            LEASE_FORMAT,
            replaces,
            lease.epoch,
            Lease.model_validate,
        )
