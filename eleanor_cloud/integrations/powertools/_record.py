"""One idempotency record as one small JSON object: its key, its body, its limits.

Object key: ``<store prefix>/<folder>/<encoded idempotency key>.json``. Powertools'
keys are ``<function name>#<hash>`` where the function name may be anything a caller
passes as ``key_prefix`` (``/``, ``..``, ``<locals>``, spaces...), so the key is
percent-encoded into ONE path segment: only letters, digits, ``-``, ``_`` and ``.`` stay
as they are (a leading ``.`` is encoded too), so nothing can escape the folder or name
a hidden file, and the encoding is one-to-one. A name longer than
:data:`MAX_PLAIN_NAME` (file systems allow 255 bytes) keeps its first 100 characters
and appends ``~`` and the SHA-256 of the whole key; ``~`` never appears in a plain name,
so the two forms cannot collide. The full key is stored in the body and checked on
every read.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import quote

from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import (
    STATUS_CONSTANTS,
    DataRecord,
)
from pydantic import BaseModel, ConfigDict

from eleanor_cloud import keys
from eleanor_cloud.errors import CorruptState, InvalidKey, InvalidState

__all__ = [
    "DEFAULT_FOLDER",
    "DEFAULT_MAX_RECORD_BYTES",
    "FORMAT",
    "IdempotencyRecord",
    "RecordTooLarge",
    "body_of",
    "check_size",
    "data_record_of",
    "is_takeable",
    "record_key",
    "tombstone",
]

FORMAT = "eleanor.powertools-idempotency/1"
DEFAULT_FOLDER = "_idempotency"
# DynamoDB's item limit, which Powertools users already design for.
DEFAULT_MAX_RECORD_BYTES = 400 * 1024
MAX_PLAIN_NAME = 180
_KEPT = 100
# The failed handler's record on a backend that cannot delete conditionally: expired
# (1970), so the next call takes it over at once.
TOMBSTONE_EXPIRY = 1


class RecordTooLarge(InvalidState):
    """A record (with its response data) is over the layer's ``max_record_bytes``."""


class IdempotencyRecord(BaseModel):
    """The body of ``<key>.json``: Powertools' ``DataRecord`` fields, by their names."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    idempotency_key: str
    status: str
    expiry_timestamp: int | None = None
    in_progress_expiry_timestamp: int | None = None
    response_data: str = ""
    payload_hash: str = ""
    note: str = ""


def record_key(base: str, idempotency_key: object) -> str:
    """The object key of ``idempotency_key`` under the already-normalized ``base``."""
    if not isinstance(idempotency_key, str) or not idempotency_key:
        raise InvalidKey(idempotency_key, "must be a non-empty str", field="idempotency key")
    name = quote(idempotency_key, safe="").replace("~", "%7E")
    if name.startswith("."):
        name = "%2E" + name[1:]
    if len(name) > MAX_PLAIN_NAME:
        digest = hashlib.sha256(idempotency_key.encode("utf-8", "surrogatepass")).hexdigest()
        name = f"{name[:_KEPT]}~{digest}"
    return keys.join_prefix(base, name + ".json")


def body_of(record: DataRecord, *, note: str = "") -> IdempotencyRecord:
    """What is stored for Powertools' ``record`` (its status as set, never derived)."""
    return IdempotencyRecord(
        idempotency_key=record.idempotency_key,
        status=record._status,  # the stored status: .status would say EXPIRED
        expiry_timestamp=record.expiry_timestamp,
        in_progress_expiry_timestamp=record.in_progress_expiry_timestamp,
        response_data=record.response_data or "",
        payload_hash=record.payload_hash or "",
        note=note,
    )


def tombstone(record: IdempotencyRecord, note: str) -> IdempotencyRecord:
    """``record`` expired at once: what a failed call leaves where it cannot delete."""
    return record.model_copy(
        update={
            "status": STATUS_CONSTANTS["EXPIRED"],
            "expiry_timestamp": TOMBSTONE_EXPIRY,
            "in_progress_expiry_timestamp": None,
            "response_data": "",
            "note": note,
        }
    )


def data_record_of(key: str, body: IdempotencyRecord, idempotency_key: str) -> DataRecord:
    """The stored body as Powertools' ``DataRecord``; a foreign key is ``CorruptState``."""
    if body.idempotency_key != idempotency_key:
        raise CorruptState(
            f"corrupt object at {key!r}: it holds the record of {body.idempotency_key!r}, "
            f"not {idempotency_key!r}",
            key=key,
            operation="decode",
        )
    if body.status not in STATUS_CONSTANTS.values():
        raise CorruptState(
            f"corrupt object at {key!r}: unknown status {body.status!r}",
            key=key,
            operation="decode",
        )
    return DataRecord(
        idempotency_key=body.idempotency_key,
        status=body.status,
        expiry_timestamp=body.expiry_timestamp,
        in_progress_expiry_timestamp=body.in_progress_expiry_timestamp,
        response_data=body.response_data,
        payload_hash=body.payload_hash,
    )


def is_takeable(body: IdempotencyRecord, now: float) -> bool:
    """Whether a new call may replace ``body`` at ``now`` (epoch seconds).

    Exactly DynamoDBPersistenceLayer's put condition: the record expired
    (``expiry < now`` in whole seconds), or it is INPROGRESS with an in-progress expiry
    (milliseconds) that passed: the invocation that wrote it timed out.
    """
    if body.expiry_timestamp is not None and body.expiry_timestamp < int(now):
        return True
    return (
        body.status == STATUS_CONSTANTS["INPROGRESS"]
        and body.in_progress_expiry_timestamp is not None
        and body.in_progress_expiry_timestamp < int(now * 1000)
    )


def check_size(key: str, body: IdempotencyRecord, limit: int) -> None:
    """``RecordTooLarge`` naming ``key`` if ``body``'s JSON is over ``limit`` bytes."""
    data: dict[str, Any] = body.model_dump(mode="json")
    size = len(json.dumps(data, ensure_ascii=False).encode("utf-8", "surrogatepass"))
    if size > limit:
        raise RecordTooLarge(
            f"idempotency record {body.idempotency_key!r} ({key!r}) is {size:,} bytes, over "
            f"the limit of {limit:,} (max_record_bytes): return less from the function, or "
            "store the result elsewhere and return a reference to it",
            key=key,
            operation="encode",
        )
