"""The demo's sink: where a records stage writes the output of each batch, once.

A records stage's delivery is at least once per batch: after a crash, the batch in
flight is offered again with the same ``batch.key``. A real stage passes that key to
its sink (a database's idempotency column, an object name, a message deduplication id)
so that a re-offered batch is written once. This sink is the simplest such thing on an
object store: one object per batch, ``<prefix>/<task_id>/<stage>/output/<batch>.json``,
created only if absent (If-None-Match on S3). A batch whose object exists was written
by an earlier offer; its records are the same, so the write is skipped. The objects
live under the task, so deleting the task (``demo --reset``) deletes them too.
"""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING, Any

from eleanor_cloud import keys
from eleanor_cloud.backends.base import CREATE
from eleanor_cloud.errors import AlreadyExists, CorruptState, NotFound

if TYPE_CHECKING:
    from eleanor_cloud.engine import Batch
    from eleanor_cloud.store.state_store import StateStore

__all__ = ["BatchSink"]


class BatchSink:
    """One stage's output objects, one per batch, named by the batch's position."""

    def __init__(self, store: StateStore, task_id: str, stage_name: str) -> None:
        self.store = store
        self.where = f"{keys.task_prefix(store.prefix, task_id)}{stage_name}/output/"

    def key(self, position: int) -> str:
        return f"{self.where}{position:06d}.json"

    def put(self, batch: Batch, records: list[dict[str, Any]]) -> bool:
        """Write the batch's output; ``False`` if an earlier offer of it already did."""
        body = {"batch": batch.key, "records": records}
        data = json.dumps(body, separators=(",", ":")).encode("utf-8")
        try:
            self.store.backend.write(self.key(batch.position), data, CREATE)
        except AlreadyExists:
            return False
        return True

    def read_all(self) -> list[dict[str, Any]]:
        """Every record written, in batch order."""
        records: list[dict[str, Any]] = []
        for key in sorted(self.store.backend.list(self.where)):
            data, _ = self.store.backend.read(key)
            try:
                records.extend(json.loads(data)["records"])
            except (ValueError, KeyError, TypeError) as exc:
                raise CorruptState(
                    f"demo sink object {key!r} is not readable: {exc}", key=key, operation="decode"
                ) from exc
        return records

    def clear(self) -> int:
        """Delete every output object (a rollback's undo); return how many."""
        found = list(self.store.backend.list(self.where))
        for key in found:
            with contextlib.suppress(NotFound):
                self.store.backend.delete(key)
        return len(found)
