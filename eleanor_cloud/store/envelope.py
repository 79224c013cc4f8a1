"""The JSON envelope around every stored record.

::

    {"format": "eleanor.stage-state/1", "revision": 7, "write_id": "<uuid4>",
     "writer": "<host/pid>", "epoch": 3, "written_at": "2026-...Z", "state": {...}}

``revision`` grows by one per write and ``write_id`` is unique per write, so no two
writes share a body (no ETag ABA) and a write whose response was lost can be
recognised by its ``write_id`` on re-read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from eleanor_cloud.errors import CorruptState

__all__ = [
    "LEASE_FORMAT",
    "MANIFEST_FORMAT",
    "PROGRESS_FORMAT",
    "STAGE_FORMAT",
    "Envelope",
    "decode",
    "encode",
]

STAGE_FORMAT = "eleanor.stage-state/1"
MANIFEST_FORMAT = "eleanor.task-manifest/1"
LEASE_FORMAT = "eleanor.lease/1"
PROGRESS_FORMAT = "eleanor.stage-progress/1"
# The name of the payload field per format, so each object reads naturally.
_BODY_FIELD = {
    STAGE_FORMAT: "state",
    MANIFEST_FORMAT: "manifest",
    LEASE_FORMAT: "lease",
    PROGRESS_FORMAT: "progress",
}
_HEADER = ("format", "revision", "write_id", "writer", "epoch", "written_at")


@dataclass(frozen=True, slots=True)
class Envelope:
    format: str
    revision: int
    write_id: str
    writer: str
    epoch: int
    written_at: str
    body: dict[str, Any]


def _body_field(fmt: str) -> str:
    # The four core documents name their body; any other (a shard plan, a done
    # marker) keeps it under "body".
    return _BODY_FIELD.get(fmt, "body")


def encode(envelope: Envelope) -> bytes:
    """Serialize to UTF-8 JSON with the header first, so a person reads it top-down."""
    doc: dict[str, Any] = {
        "format": envelope.format,
        "revision": envelope.revision,
        "write_id": envelope.write_id,
        "writer": envelope.writer,
        "epoch": envelope.epoch,
        "written_at": envelope.written_at,
        _body_field(envelope.format): envelope.body,
    }
    return json.dumps(doc, ensure_ascii=False, allow_nan=False).encode("utf-8")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode(data: bytes, *, key: str, expected_format: str) -> Envelope:
    """Parse and check an envelope; any defect raises ``CorruptState`` naming ``key``."""

    def corrupt(why: str) -> CorruptState:
        return CorruptState(f"corrupt object at {key!r}: {why}", key=key, operation="decode")

    try:
        doc = json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError as exc:
        raise corrupt(f"not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise corrupt(f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from exc
    except RecursionError as exc:
        raise corrupt("JSON nested too deeply") from exc
    except ValueError as exc:  # NaN/Infinity, or an integer beyond Python's digit limit
        raise corrupt(f"not JSON ({str(exc)[:120]})") from exc
    if not isinstance(doc, dict):
        raise corrupt(f"expected a JSON object, found {type(doc).__name__}")
    fmt = doc.get("format")
    if fmt != expected_format:
        raise corrupt(f"unknown format {fmt!r} (expected {expected_format!r})")
    missing = [name for name in _HEADER if name not in doc]
    body_field = _body_field(expected_format)
    if body_field not in doc:
        missing.append(body_field)
    if missing:
        raise corrupt(f"missing field(s) {', '.join(missing)}")
    extra = set(doc) - set(_HEADER) - {body_field}
    if extra:
        raise corrupt(f"unexpected field(s) {', '.join(sorted(extra))}")
    revision, epoch, body = doc["revision"], doc["epoch"], doc[body_field]
    if type(revision) is not int or revision < 1:
        raise corrupt(f"revision must be a positive integer, found {revision!r}")
    if type(epoch) is not int or epoch < 0:
        raise corrupt(f"epoch must be a non-negative integer, found {epoch!r}")
    for name in ("write_id", "writer", "written_at"):
        if not isinstance(doc[name], str):
            raise corrupt(f"{name} must be a string, found {doc[name]!r}")
    if not isinstance(body, dict):
        raise corrupt(f"{body_field} must be a JSON object, found {type(body).__name__}")
    return Envelope(fmt, revision, doc["write_id"], doc["writer"], epoch, doc["written_at"], body)
