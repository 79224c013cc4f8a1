"""Documents beside the stage states: a records stage's progress and its failed-id chunks.

The progress object is an envelope like every other (versioned, compare-and-swapped,
stamped with the writer's epoch). A chunk is written once (Create) as JSON lines, a
header line then one line per record, so an operator can read it with ``jq``; it is
never rewritten once a progress object refers to it.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel

from eleanor_cloud import keys
from eleanor_cloud.backends.base import CREATE, Replace, Version
from eleanor_cloud.errors import AlreadyExists, CorruptState, InvalidState, NotFound
from eleanor_cloud.store.envelope import PROGRESS_FORMAT
from eleanor_cloud.store.records import Record
from eleanor_cloud.store.state_store import StateStore

__all__ = ["CHUNK_FORMAT", "load_progress", "read_chunk", "save_progress", "write_chunk"]

M = TypeVar("M", bound=BaseModel)
CHUNK_FORMAT = "eleanor.failed-records/1"


def load_progress(
    store: StateStore, task_id: str, stage_name: str, model: type[M], *, shard: str | None = None
) -> Record[M] | None:
    """A stage's (or shard's) progress record, or ``None`` if it never checkpointed."""
    key = keys.progress_key(store.prefix, task_id, stage_name, shard)
    try:
        return store.read_document(key, PROGRESS_FORMAT, model.model_validate)
    except NotFound:
        return None


def save_progress(
    store: StateStore,
    progress: M,
    *,
    task_id: str,
    stage_name: str,
    replaces: Record[M] | None,
    epoch: int,
    shard: str | None = None,
) -> Record[M]:
    """Create (``replaces=None``) or compare-and-swap a stage's progress at ``epoch``."""
    key = keys.progress_key(store.prefix, task_id, stage_name, shard)
    return store.write_document(key, progress, PROGRESS_FORMAT, replaces=replaces, epoch=epoch)


def write_chunk(
    store: StateStore,
    task_id: str,
    stage_name: str,
    name: str,
    header: dict[str, Any],
    lines: list[dict[str, Any]],
    *,
    replaces: Version | None = None,
    shard: str | None = None,
) -> Version:
    """Write one chunk of failed ids: create it, or (``replaces``) rewrite it with more
    lines appended. A chunk already there under a new name is this holder's own earlier
    try (names carry the epoch): it is replaced. Lines past the count a progress object
    records for a chunk were never committed; readers take only that many."""
    key = keys.failed_chunk_key(store.prefix, task_id, stage_name, name, shard)
    try:
        rows = [json.dumps({"format": CHUNK_FORMAT, **header}, ensure_ascii=False)]
        rows += [json.dumps(line, ensure_ascii=False, allow_nan=False) for line in lines]
    except (TypeError, ValueError) as exc:
        raise InvalidState(f"cannot store {key!r}: {exc}", key=key) from exc
    data = ("\n".join(rows) + "\n").encode("utf-8")
    if replaces is not None:
        return store.backend.write(key, data, Replace(replaces))
    try:
        return store.backend.write(key, data, CREATE)
    except AlreadyExists:
        _, version = store.backend.read(key)
        return store.backend.write(key, data, Replace(version))


def read_chunk(
    store: StateStore,
    task_id: str,
    stage_name: str,
    name: str,
    count: int | None = None,
    *,
    shard: str | None = None,
) -> list[dict[str, Any]]:
    """The first ``count`` record lines of one chunk (all without ``count``);
    ``CorruptState`` naming the key if unreadable or shorter than ``count``."""
    key = keys.failed_chunk_key(store.prefix, task_id, stage_name, name, shard)
    data, _ = store.backend.read(key)
    try:
        lines = [row for row in data.decode("utf-8").splitlines() if row.strip()]
        if count is not None:
            lines = lines[: count + 1]  # the header, then only the committed lines
        rows = [json.loads(row) for row in lines]
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CorruptState(f"corrupt chunk at {key!r}: {exc}", key=key, operation="decode") from exc
    if not rows or not isinstance(rows[0], dict) or rows[0].get("format") != CHUNK_FORMAT:
        raise CorruptState(
            f"corrupt chunk at {key!r}: the first line is not a {CHUNK_FORMAT} header",
            key=key,
            operation="decode",
        )
    body = rows[1:]
    if count is not None:
        # Lines past the committed count may be a torn append: never judge them.
        if len(body) < count:
            raise CorruptState(
                f"corrupt chunk at {key!r}: {len(body)} lines, the progress records {count}",
                key=key,
                operation="decode",
            )
        body = body[:count]
    for index, row in enumerate(body, start=2):
        if not isinstance(row, dict) or not isinstance(row.get("id"), str):
            raise CorruptState(
                f"corrupt chunk at {key!r}: line {index} has no string 'id'",
                key=key,
                operation="decode",
            )
    return body
