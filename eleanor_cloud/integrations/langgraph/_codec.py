"""The saver's three JSON documents and their size limit.

Each object is a small JSON envelope (format, ids, writer, time, a unique ``write_id``)
around the values the saver's serde encoded (``[type, base64]`` pairs): readable ids,
opaque payloads. Every channel value is encoded on its own, so a value the serializer
refuses is reported by channel name, and the whole body is measured before any write,
so a checkpoint over the limit is refused whole, never half-written.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from langgraph.checkpoint.serde.base import SerializerProtocol

from eleanor_cloud.errors import CorruptState
from eleanor_cloud.integrations.langgraph._errors import CheckpointTooLarge, UnserializableValue

__all__ = [
    "CHECKPOINT_FORMAT",
    "DEFAULT_MAX_OBJECT_BYTES",
    "HEAD_FORMAT",
    "WRITES_FORMAT",
    "Head",
    "StoredCheckpoint",
    "StoredWrite",
    "decode_checkpoint",
    "decode_head",
    "decode_writes",
    "encode_checkpoint",
    "encode_head",
    "encode_writes",
    "load_document",
    "write_id_of",
]

CHECKPOINT_FORMAT = "eleanor.langgraph.checkpoint/1"
WRITES_FORMAT = "eleanor.langgraph.writes/1"
HEAD_FORMAT = "eleanor.langgraph.head/1"
DEFAULT_MAX_OBJECT_BYTES = 4 * 1024 * 1024


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _typed(serde: SerializerProtocol, value: Any, *, thread_id: str, what: str) -> list[str]:
    try:
        kind, data = serde.dumps_typed(value)
    except Exception as exc:
        raise UnserializableValue(
            f"thread {thread_id!r}: {what} holds a {type(value).__name__} that "
            f"{type(serde).__name__} cannot serialise ({exc}); store plain data, or pass "
            "the saver a serde that knows this type",
            thread_id=thread_id,
            channel=what,
        ) from exc
    return [kind, base64.b64encode(data).decode("ascii")]


def _untyped(serde: SerializerProtocol, pair: Any) -> Any:
    kind, data = pair
    return serde.loads_typed((str(kind), base64.b64decode(data)))


def _envelope(fmt: str, writer: str, **fields: Any) -> dict[str, Any]:
    return {
        "format": fmt,
        "write_id": uuid.uuid4().hex,
        "writer": writer,
        "written_at": _now(),
        **fields,
    }


def _dump(doc: dict[str, Any], *, key: str, limit: int, what: str) -> bytes:
    body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(body) > limit:
        raise CheckpointTooLarge(
            f"{what} is {len(body):,} bytes encoded, over the saver's limit of {limit:,} "
            f"bytes (max_object_bytes); nothing was written. Keep large data out of the "
            f"graph state (store a reference to it) or raise the limit",
            key=key,
            size=len(body),
            limit=limit,
        )
    return body


def load_document(data: bytes, fmt: str, *, key: str) -> dict[str, Any]:
    """The JSON envelope at ``key``; ``CorruptState`` naming the key if it is not one."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptState(f"{key}: not a JSON document ({exc})", key=key) from exc
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise CorruptState(f"{key}: expected format {fmt!r}, found {found!r}", key=key)
    return doc


def write_id_of(data: bytes) -> str | None:
    """The ``write_id`` of a stored envelope (to recognise our own write), else ``None``."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return doc.get("write_id") if isinstance(doc, dict) else None


# -- checkpoints ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str
    parent_checkpoint_id: str | None
    checkpoint: dict[str, Any]
    metadata: dict[str, Any]


def encode_checkpoint(
    serde: SerializerProtocol,
    *,
    key: str,
    limit: int,
    writer: str,
    thread_id: str,
    checkpoint_ns: str,
    parent_checkpoint_id: str | None,
    checkpoint: dict[str, Any],
    metadata: dict[str, Any],
) -> tuple[bytes, str]:
    """The body of a checkpoint object and its ``write_id``."""
    rest = {k: v for k, v in checkpoint.items() if k != "channel_values"}
    values = checkpoint.get("channel_values") or {}
    channels = {
        str(name): _typed(serde, value, thread_id=thread_id, what=f"channel {name!r}")
        for name, value in values.items()
    }
    doc = _envelope(
        CHECKPOINT_FORMAT,
        writer,
        thread_id=thread_id,
        checkpoint_ns=checkpoint_ns,
        checkpoint_id=checkpoint["id"],
        parent_checkpoint_id=parent_checkpoint_id,
        checkpoint=_typed(serde, rest, thread_id=thread_id, what="the checkpoint's versions"),
        metadata=_typed(serde, metadata, thread_id=thread_id, what="the checkpoint's metadata"),
        channel_values=channels,
    )
    biggest = sorted(channels, key=lambda n: len(channels[n][1]), reverse=True)[:3]
    what = (
        f"checkpoint {checkpoint['id']!r} of thread {thread_id!r} (namespace "
        f"{checkpoint_ns!r}; largest channels: {', '.join(map(repr, biggest)) or 'none'})"
    )
    return _dump(doc, key=key, limit=limit, what=what), str(doc["write_id"])


def decode_checkpoint(serde: SerializerProtocol, data: bytes, *, key: str) -> StoredCheckpoint:
    doc = load_document(data, CHECKPOINT_FORMAT, key=key)
    try:
        checkpoint = dict(_untyped(serde, doc["checkpoint"]))
        checkpoint["channel_values"] = {
            name: _untyped(serde, pair) for name, pair in doc["channel_values"].items()
        }
        metadata = dict(_untyped(serde, doc["metadata"]))
        return StoredCheckpoint(
            thread_id=str(doc["thread_id"]),
            checkpoint_ns=str(doc["checkpoint_ns"]),
            checkpoint_id=str(doc["checkpoint_id"]),
            parent_checkpoint_id=doc.get("parent_checkpoint_id"),
            checkpoint=checkpoint,
            metadata=metadata,
        )
    except Exception as exc:
        raise CorruptState(f"{key}: not a valid checkpoint ({exc!r})", key=key) from exc


# -- pending writes ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredWrite:
    task_id: str
    task_path: str
    idx: int
    channel: str
    value: Any

    def sort_key(self) -> tuple[str, str, int]:
        return (self.task_path, self.task_id, self.idx)


def encode_writes(
    serde: SerializerProtocol,
    *,
    key: str,
    limit: int,
    writer: str,
    thread_id: str,
    checkpoint_ns: str,
    checkpoint_id: str,
    task_id: str,
    task_path: str,
    writes: list[tuple[int, str, Any]],
) -> bytes:
    entries = [
        [idx, channel, *_typed(serde, value, thread_id=thread_id, what=f"write to {channel!r}")]
        for idx, channel, value in writes
    ]
    doc = _envelope(
        WRITES_FORMAT,
        writer,
        thread_id=thread_id,
        checkpoint_ns=checkpoint_ns,
        checkpoint_id=checkpoint_id,
        task_id=task_id,
        task_path=task_path,
        writes=entries,
    )
    what = f"the writes of task {task_id!r} to checkpoint {checkpoint_id!r} of thread {thread_id!r}"
    return _dump(doc, key=key, limit=limit, what=what)


def decode_writes(serde: SerializerProtocol, data: bytes, *, key: str) -> list[StoredWrite]:
    doc = load_document(data, WRITES_FORMAT, key=key)
    try:
        task_id, task_path = str(doc["task_id"]), str(doc.get("task_path", ""))
        return [
            StoredWrite(task_id, task_path, int(idx), str(ch), _untyped(serde, (kind, b64)))
            for idx, ch, kind, b64 in doc["writes"]
        ]
    except Exception as exc:
        raise CorruptState(f"{key}: not a valid writes object ({exc!r})", key=key) from exc


# -- the head ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Head:
    checkpoint_id: str
    writer: str
    written_at: str


def encode_head(*, writer: str, checkpoint_id: str, parent_checkpoint_id: str | None) -> bytes:
    doc = _envelope(
        HEAD_FORMAT,
        writer,
        checkpoint_id=checkpoint_id,
        parent_checkpoint_id=parent_checkpoint_id,
    )
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def decode_head(data: bytes, *, key: str) -> Head:
    doc = load_document(data, HEAD_FORMAT, key=key)
    if not isinstance(doc.get("checkpoint_id"), str):
        raise CorruptState(f"{key}: a head without a checkpoint_id", key=key)
    return Head(doc["checkpoint_id"], str(doc.get("writer", "")), str(doc.get("written_at", "")))
