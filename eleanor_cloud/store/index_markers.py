"""The task index's objects: one small marker per task, in its status's partition.

``<prefix>/_index/status/<STATUS>/<task_id>`` holds ``{"task_id", "status",
"changed_at", "writer"}`` (under 1 KiB whatever the task). A LIST of one partition
names the tasks with that status; a status change moves the marker (a conditional
create of the new one, then a DELETE of the old one). The engine writes the new
marker *before* the state write that makes the status true, so a crash between the
two leaves an extra marker (a reader repairs it), never a task missing from its true partition. See
:mod:`eleanor_cloud.engine.indexing` (writes) and :mod:`eleanor_cloud.engine.task_index`
(reads, repairs, rebuild).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime

from eleanor_cloud import keys
from eleanor_cloud.backends.base import CREATE
from eleanor_cloud.clock import format_ts, parse_ts
from eleanor_cloud.errors import AlreadyExists, NotFound
from eleanor_cloud.models import StageStatus
from eleanor_cloud.store.state_store import StateStore

__all__ = [
    "INDEXED",
    "MARKER_FORMAT",
    "Marker",
    "delete_marker",
    "list_marked",
    "put_marker",
    "read_marker",
]

MARKER_FORMAT = "eleanor.index-marker/1"
# The statuses of bound tasks (a task is indexed from the moment it is bound).
INDEXED = (
    StageStatus.CREATED,
    StageStatus.RUNNING,
    StageStatus.COMPLETE,
    StageStatus.ERROR,
    StageStatus.CANCELED,
)
_UNKNOWN = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Marker:
    """What a marker says; ``changed_at`` is the epoch of time for an unreadable one."""

    task_id: str
    status: StageStatus
    changed_at: datetime
    writer: str = ""


def _body(task_id: str, status: StageStatus, changed_at: datetime, writer: str) -> bytes:
    doc = {
        "format": MARKER_FORMAT,
        "task_id": task_id,
        "status": status.value,
        "changed_at": format_ts(changed_at),
        "writer": writer[:200],
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def put_marker(store: StateStore, status: StageStatus, task_id: str, changed_at: datetime) -> bool:
    """Create the marker (one conditional PUT); ``False`` if it was there already (it
    keeps its own ``changed_at``). Create, not overwrite: a bucket policy may refuse
    every unconditional write under the state prefix (infra/state-bucket.yaml)."""
    key = keys.index_marker_key(store.prefix, status.value, task_id)
    try:
        store.backend.write(key, _body(task_id, status, changed_at, store.writer), CREATE)
    except AlreadyExists:
        return False
    return True


def delete_marker(store: StateStore, status: StageStatus, task_id: str) -> None:
    """Remove the marker (one DELETE); a missing one is fine."""
    key = keys.index_marker_key(store.prefix, status.value, task_id)
    with suppress(NotFound):
        store.backend.delete(key)


def read_marker(store: StateStore, status: StageStatus, task_id: str) -> Marker | None:
    """The marker (one GET), or ``None`` if there is none. An undecodable one reads as
    changed at the epoch of time: old enough to be repaired, never an error."""
    key = keys.index_marker_key(store.prefix, status.value, task_id)
    try:
        data, _ = store.backend.read(key)
    except NotFound:
        return None
    try:
        doc = json.loads(data)
        return Marker(task_id, status, parse_ts(doc["changed_at"]), str(doc.get("writer", "")))
    except (ValueError, TypeError, KeyError):
        return Marker(task_id, status, _UNKNOWN)


def list_marked(store: StateStore, status: StageStatus, id_prefix: str = "") -> Iterator[str]:
    """Task ids marked with ``status`` whose id starts with ``id_prefix``, in order
    (LIST pages of that partition only)."""
    base = keys.index_partition(store.prefix, status.value)
    for key in store.backend.list(base + id_prefix, delimiter="/"):
        task_id = key[len(base) :]
        if not key.endswith("/") and keys.is_valid_task_id(task_id):
            yield task_id
