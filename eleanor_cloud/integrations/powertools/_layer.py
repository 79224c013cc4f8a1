"""The persistence layer: Powertools' four record operations as conditional writes.

=================  ===============================================  ==================
Powertools asks    we do                                            requests
=================  ===============================================  ==================
``_put_record``    Create the INPROGRESS record                      1
  (it exists)      + GET it; live: ``IdempotencyItemAlreadyExists``  2 (1 read_first)
  (expired)        + compare-and-swap it (exactly one taker wins)   3 (2 read_first)
``_update_record`` compare-and-swap against the version we wrote      1
``_delete_record`` DELETE if at the version we wrote                 1
``_get_record``    GET                                               1
=================  ===============================================  ==================

``read_first=True`` GETs before creating: a repeated call costs 1 request instead of 2,
a first call 3 instead of 2 (see docs/powertools.md for which to pick).

The version a call wrote travels from ``_put_record`` to ``_update_record`` /
``_delete_record`` in a context variable (Powertools passes only the record), so each
thread and each asyncio task completes exactly what it created, never a record
another call took over in between.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any

from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyItemAlreadyExistsError,
    IdempotencyItemNotFoundError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import (
    STATUS_CONSTANTS,
    DataRecord,
)

from eleanor_cloud import keys
from eleanor_cloud.errors import Conflict, InvalidState, NotFound, NotSupported
from eleanor_cloud.integrations.powertools._record import (
    DEFAULT_FOLDER,
    DEFAULT_MAX_RECORD_BYTES,
    FORMAT,
    IdempotencyRecord,
    body_of,
    check_size,
    data_record_of,
    is_takeable,
    record_key,
    tombstone,
)
from eleanor_cloud.store import Record, StateStore, open_store

__all__ = ["ObjectStorePersistenceLayer", "RecordTakenOver"]

logger = logging.getLogger(__name__)
# Create / take-over rounds before leaving it to Powertools' own retry (the record kept
# vanishing or changing under us: a delete or another taker each time).
_ATTEMPTS = 3
_Pending = Mapping[tuple[str, str], Record[IdempotencyRecord]]
_PENDING: ContextVar[_Pending] = ContextVar("eleanor_cloud_powertools_pending")


class RecordTakenOver(Conflict):
    """Completion found the record no longer ours: another call took it over."""


class ObjectStorePersistenceLayer(BasePersistenceLayer):
    """Powertools idempotency records as JSON objects on any eleanor_cloud store.

    ``store`` is a :class:`~eleanor_cloud.StateStore` or a store URL (``s3://bucket/p``,
    a directory, ``memory://``; ``open_options`` go to ``open_store``). Records live
    under ``<store prefix>/<folder>/`` (default ``_idempotency``, which no task id can
    be). ``max_record_bytes`` bounds one record's JSON (default 400 KiB, DynamoDB's item
    limit). ``clock`` returns epoch seconds; it judges expiry (Powertools' own
    ``datetime.now()`` computes the timestamps it writes).
    """

    def __init__(
        self,
        store: StateStore | str,
        *,
        folder: str = DEFAULT_FOLDER,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        read_first: bool = False,
        clock: Callable[[], float] = time.time,
        **open_options: Any,
    ) -> None:
        if isinstance(store, str):
            store = open_store(store, **open_options)
        elif open_options:
            raise InvalidState("open_options apply only when store is a URL")
        if not isinstance(store, StateStore):
            raise InvalidState(f"store must be a StateStore or a URL, got {type(store).__name__}")
        if isinstance(max_record_bytes, bool) or not isinstance(max_record_bytes, int):
            raise InvalidState(f"max_record_bytes must be an int, got {max_record_bytes!r}")
        if max_record_bytes < 1024:
            raise InvalidState(f"max_record_bytes must be >= 1024, got {max_record_bytes}")
        folder = keys.normalize_prefix(folder)
        if not folder:
            raise InvalidState("folder must not be empty: records need their own folder")
        self.store = store
        self.base = keys.join_prefix(store.prefix, folder)
        self.max_record_bytes = max_record_bytes
        self.read_first = read_first
        self.clock = clock
        self._token = uuid.uuid4().hex  # whose entries in the context variable
        super().__init__()  # type: ignore[no-untyped-call]

    def __repr__(self) -> str:
        return f"ObjectStorePersistenceLayer({self.store.backend.description} {self.base!r})"

    def key_of(self, idempotency_key: str) -> str:
        """The object key holding ``idempotency_key``'s record."""
        return record_key(self.base, idempotency_key)

    # -- the version we wrote, per thread / asyncio task -------------------------------

    def _remember(self, idempotency_key: str, record: Record[IdempotencyRecord]) -> None:
        _PENDING.set({**_PENDING.get({}), (self._token, idempotency_key): record})

    def _take(self, idempotency_key: str) -> Record[IdempotencyRecord] | None:
        pending = dict(_PENDING.get({}))
        mine = pending.pop((self._token, idempotency_key), None)
        _PENDING.set(pending)
        return mine

    # -- reads and writes ----------------------------------------------------------------

    def _read(self, key: str) -> Record[IdempotencyRecord] | None:
        try:
            return self.store.read_document(key, FORMAT, IdempotencyRecord.model_validate)
        except NotFound:
            return None

    def _write(
        self, key: str, body: IdempotencyRecord, replaces: Record[IdempotencyRecord] | None
    ) -> Record[IdempotencyRecord]:
        check_size(key, body, self.max_record_bytes)
        return self.store.write_document(key, body, FORMAT, replaces=replaces, epoch=0)

    # -- Powertools' contract ------------------------------------------------------------

    def _get_record(self, idempotency_key: str) -> DataRecord:
        key = self.key_of(idempotency_key)
        current = self._read(key)
        if current is None:
            raise IdempotencyItemNotFoundError
        return data_record_of(key, current.value, idempotency_key)

    def _put_record(self, data_record: DataRecord) -> None:
        idem = data_record.idempotency_key
        key = self.key_of(idem)
        body = body_of(data_record)
        current = self._read(key) if self.read_first else None
        replaces: Record[IdempotencyRecord] | None = None
        for _ in range(_ATTEMPTS):
            if current is not None:
                if not is_takeable(current.value, self.clock()):
                    self._refuse(key, data_record, current)
                replaces = current  # expired: compare-and-swap it; one taker wins
            try:
                written = self._write(key, body, replaces)
            except Conflict as exc:  # AlreadyExists too: the store read what is there
                current = exc.current if isinstance(exc.current, Record) else self._read(key)
                replaces = None
                continue
            self._remember(idem, written)
            return
        # It kept changing under us: Powertools reads it and retries the whole call.
        raise IdempotencyItemAlreadyExistsError

    def _refuse(self, key: str, mine: DataRecord, current: Record[IdempotencyRecord]) -> None:
        old = data_record_of(key, current.value, mine.idempotency_key)
        # As DynamoDBPersistenceLayer does with ReturnValuesOnConditionCheckFailure:
        # a payload mismatch is Powertools' validation error, not "already exists".
        self._validate_payload(data_payload=mine, stored_data_record=old)
        self._save_to_cache(data_record=old)
        raise IdempotencyItemAlreadyExistsError(old_data_record=old)

    def _update_record(self, data_record: DataRecord) -> None:
        idem = data_record.idempotency_key
        key = self.key_of(idem)
        body = body_of(data_record)
        check_size(key, body, self.max_record_bytes)  # before forgetting our version
        mine = self._take(idem) or self._unowned_in_progress(key)
        try:
            self._write(key, body, mine)
        except Conflict as exc:
            raise RecordTakenOver(
                f"idempotency record {idem!r} ({key!r}) is no longer the one this call "
                "wrote: another call took it over (its in-progress or record expiry "
                "passed) or it was deleted; this call's result was not stored and the "
                "other call's record was left as it is",
                key=key,
                operation="complete",
                current=exc.current,
            ) from exc

    def _unowned_in_progress(self, key: str) -> Record[IdempotencyRecord] | None:
        """An INPROGRESS record this context did not create (a Powertools replay of an
        earlier invocation's call): completed against the version read now."""
        current = self._read(key)
        if current is not None and current.value.status == STATUS_CONSTANTS["INPROGRESS"]:
            return current
        return None

    def _delete_record(self, data_record: DataRecord) -> None:
        idem = data_record.idempotency_key
        key = self.key_of(idem)
        mine = self._take(idem) or self._unowned_in_progress(key)
        if mine is None:
            return
        try:
            self.store.backend.delete(key, if_version=mine.version)
        except NotSupported:
            self._expire(key, mine)
        except (Conflict, NotFound):
            self._left(key, "changed")

    def _expire(self, key: str, mine: Record[IdempotencyRecord]) -> None:
        # Deleting unconditionally could remove a record another call took over in the
        # meantime (and let a third call run too): expire ours by compare-and-swap.
        note = (
            f"the call failed; {self.store.backend.description} cannot delete "
            "conditionally, so the record was expired instead of deleted"
        )
        try:
            self._write(key, tombstone(mine.value, note), mine)
        except Conflict:
            self._left(key, "changed")

    def _left(self, key: str, what: str) -> None:
        # Not raised: Powertools would report this instead of the function's own error.
        logger.warning(
            "idempotency record %r %s since this call wrote it (taken over or deleted): "
            "left as it is, not deleted",
            key,
            what,
        )
