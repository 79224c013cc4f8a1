"""The object layout of the LangGraph saver, and the encoding that keeps it under the prefix.

::

    <root>/<thread>/<ns>/head.json                       the namespace's latest checkpoint (CAS)
    <root>/<thread>/<ns>/checkpoints/<checkpoint>.json   one per checkpoint (Create, immutable)
    <root>/<thread>/<ns>/writes/<checkpoint>/<task>.<slot>.json   pending writes of one task

``<root>`` is ``<store prefix>/_langgraph`` by default (a name no task id can take).
Thread ids, namespaces, checkpoint and task ids are user data: each becomes one path
segment by keeping ``A-Z a-z 0-9 _ -`` and writing every other UTF-8 byte as ``=XX``
(``=`` itself too); the empty string is ``=`` alone. So no id can contain ``/``, be ``.``
or ``..``, or reach outside ``<root>``, and decoding is exact. Control characters are
refused (they are never a sensible id), and so is a segment over 255 bytes once encoded
(a file name's limit on local disks).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from eleanor_cloud.errors import InvalidKey

__all__ = [
    "DEFAULT_FOLDER",
    "MAX_SEGMENT_BYTES",
    "Layout",
    "ParsedKey",
    "decode_segment",
    "encode_segment",
]

DEFAULT_FOLDER = "_langgraph"
MAX_SEGMENT_BYTES = 255
_KEEP = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_ESCAPE = re.compile(r"=([0-9A-F]{2})")


def encode_segment(value: object, *, field: str) -> str:
    """``value`` as one safe path segment; ``InvalidKey`` naming ``field`` if it cannot be."""
    if not isinstance(value, str):
        raise InvalidKey(value, f"must be a str, not {type(value).__name__}", field=field)
    if _CONTROL.search(value):
        raise InvalidKey(value, "must not contain control characters", field=field)
    if value == "":
        return "="
    out = "".join(chr(b) if b in _KEEP else f"={b:02X}" for b in value.encode("utf-8"))
    if len(out) > MAX_SEGMENT_BYTES:
        raise InvalidKey(
            value[:80] + ("..." if len(value) > 80 else ""),
            f"is too long: {len(out)} bytes once encoded for a key, at most {MAX_SEGMENT_BYTES}",
            field=field,
        )
    return out


def decode_segment(segment: str) -> str:
    """The inverse of :func:`encode_segment`."""
    if segment == "=":
        return ""
    raw = bytearray()
    pos = 0
    for match in _ESCAPE.finditer(segment):
        raw += segment[pos : match.start()].encode("ascii")
        raw.append(int(match.group(1), 16))
        pos = match.end()
    raw += segment[pos:].encode("ascii")
    return raw.decode("utf-8")


@dataclass(frozen=True, slots=True)
class ParsedKey:
    """What a key under the root names: ``kind`` is head, checkpoint or writes."""

    thread_id: str
    checkpoint_ns: str
    kind: str
    checkpoint_id: str | None = None


@dataclass(frozen=True, slots=True)
class Layout:
    """Key construction and parsing under one root (``<prefix>/_langgraph``)."""

    root: str

    def thread_prefix(self, thread_id: str) -> str:
        return f"{self.root}/{encode_segment(thread_id, field='thread_id')}/"

    def ns_prefix(self, thread_id: str, ns: str) -> str:
        return f"{self.thread_prefix(thread_id)}{encode_segment(ns, field='checkpoint_ns')}/"

    def head(self, thread_id: str, ns: str) -> str:
        return f"{self.ns_prefix(thread_id, ns)}head.json"

    def checkpoint(self, thread_id: str, ns: str, checkpoint_id: str) -> str:
        cid = encode_segment(checkpoint_id, field="checkpoint_id")
        return f"{self.ns_prefix(thread_id, ns)}checkpoints/{cid}.json"

    def writes_prefix(self, thread_id: str, ns: str, checkpoint_id: str) -> str:
        cid = encode_segment(checkpoint_id, field="checkpoint_id")
        return f"{self.ns_prefix(thread_id, ns)}writes/{cid}/"

    def writes(self, thread_id: str, ns: str, checkpoint_id: str, task_id: str, slot: int) -> str:
        task = encode_segment(task_id, field="task_id")
        return f"{self.writes_prefix(thread_id, ns, checkpoint_id)}{task}.{slot}.json"

    def parse(self, key: str) -> ParsedKey | None:
        """What ``key`` is, or ``None`` for a key this layout never writes."""
        if not key.startswith(self.root + "/"):
            return None
        parts = key[len(self.root) + 1 :].split("/")
        try:
            thread, ns = decode_segment(parts[0]), decode_segment(parts[1])
            if len(parts) == 3 and parts[2] == "head.json":
                return ParsedKey(thread, ns, "head")
            if len(parts) == 4 and parts[2] == "checkpoints" and parts[3].endswith(".json"):
                return ParsedKey(thread, ns, "checkpoint", decode_segment(parts[3][:-5]))
            if len(parts) == 5 and parts[2] == "writes":
                return ParsedKey(thread, ns, "writes", decode_segment(parts[3]))
        except (IndexError, UnicodeError, ValueError):
            return None
        return None
