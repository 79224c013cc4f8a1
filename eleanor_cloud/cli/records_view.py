"""A records stage as the CLI shows it: its progress, and its failed record ids.

A records stage (one that iterates ``ctx.records(...)``) keeps
``<task>/<stage>/progress.json`` and ``<task>/<stage>/failed/<name>.jsonl`` beside its
stage object. The task's one-level LIST, which ``status`` makes anyway, rolls that
folder up into a ``<stage>/`` entry, so the CLI knows which stages have progress
without asking: reading it costs one GET per records stage (whatever its status,
COMPLETE included) and nothing for any other stage. Listing failed ids costs one GET
per chunk read (at most 1,000 ids each), and ``--limit`` stops the reads early.

Nothing here writes. A progress object at or below the lease's deletion floor was
left by a deleted incarnation of the task id: the engine ignores it, and so does this.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from eleanor_cloud.engine.progress import FailedChunk, Progress, result_of
from eleanor_cloud.errors import CorruptState, NotFound
from eleanor_cloud.store import documents
from eleanor_cloud.store.records import Record
from eleanor_cloud.store.state_store import StateStore

__all__ = ["FailedId", "ProgressView", "failed_chunks", "failed_ids", "load_progress_views"]


@dataclass(frozen=True)
class ProgressView:
    """One records stage's progress as last checkpointed, with its counts computed as
    the engine computes the stage's ``SimpleRecordsResult``."""

    record: Record[Progress]

    @property
    def progress(self) -> Progress:
        return self.record.value

    @property
    def checkpointed_at(self) -> str:
        """When the progress was last written: the last checkpoint, or the start of
        the latest slice of the attempt (which writes it once before any batch)."""
        return self.record.written_at

    @property
    def total(self) -> int | None:
        """The record count, when the source told it."""
        p = self.progress
        return None if p.total is None else max(p.total, p.offered)

    @property
    def ok(self) -> int:
        return self.progress.success

    @property
    def fail(self) -> int:
        return result_of(self.progress).fail_count

    @property
    def unprocessed(self) -> int:
        """Not done yet: reported ``unprocessed``, and (total known) not read yet."""
        return result_of(self.progress).unprocessed_count

    @property
    def done(self) -> int:
        return self.ok + self.fail

    @property
    def failed_ids(self) -> int:
        """How many ids ``eleanor-cloud failed`` lists (errors beyond the kept chunks
        are counted only: see ``dropped``)."""
        return sum(chunk.count - skip for chunk, skip in failed_chunks(self.progress))

    @property
    def retry_pending(self) -> int | None:
        """Failed records of earlier attempts still to re-offer (``None``: no pass)."""
        retry = self.progress.retry
        return None if retry is None else sum(retry.pending)


def load_progress_views(
    store: StateStore, task_id: str, names: list[str], floor: int = 0
) -> dict[str, ProgressView | str]:
    """The progress of each named stage (those with a ``<stage>/`` folder): a view, or
    the error text of one that cannot be decoded; stages without one are left out.
    One GET each, on a small thread pool when there are several."""

    def load_one(name: str) -> ProgressView | str | None:
        try:
            record = documents.load_progress(store, task_id, name, Progress)
        except CorruptState as exc:
            return str(exc)
        if record is None or (floor > 0 and record.epoch <= floor):
            return None
        return ProgressView(record)

    if len(names) <= 1:
        loaded = [load_one(n) for n in names]
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(min(8, len(names)), thread_name_prefix="eleanor-cli") as pool:
            loaded = list(pool.map(load_one, names))
    return {n: v for n, v in zip(names, loaded, strict=True) if v is not None}


def failed_chunks(progress: Progress) -> list[tuple[FailedChunk, int]]:
    """The chunks holding the stage's failed ids, each with the lines to skip: the
    chunks of the latest outcomes, then the retry pass's pending ones (the first of
    which it has re-offered ``offset`` lines of already)."""
    found = [(chunk, 0) for chunk in progress.chunks]
    retry = progress.retry
    if retry is not None and not retry.done:
        pending = retry.chunks[retry.chunk :]
        found += [(chunk, retry.offset if i == 0 else 0) for i, chunk in enumerate(pending)]
    return [(chunk, skip) for chunk, skip in found if chunk.count > skip]


@dataclass(frozen=True)
class FailedId:
    """One failed record: its id, latest status and reason, and the chunk holding it."""

    id: str
    status: str
    reason: str
    chunk: str

    def as_json(self) -> dict[str, str]:
        return {"id": self.id, "status": self.status, "reason": self.reason, "chunk": self.chunk}


def failed_ids(
    store: StateStore, task_id: str, stage_name: str, progress: Progress
) -> Iterator[FailedId]:
    """Every failed id the progress refers to, one chunk read at a time (memory stays
    bounded by a chunk whatever the count). Lines a chunk holds past the count the
    progress records were never committed: they are not listed."""
    for chunk, skip in failed_chunks(progress):
        try:
            lines = documents.read_chunk(store, task_id, stage_name, chunk.name, chunk.count)
        except NotFound:
            raise CorruptState(
                f"stage {stage_name!r} of task {task_id!r}: the progress refers to failed "
                f"chunk {chunk.name!r}, which is missing",
                operation="read",
            ) from None
        for line in lines[skip:]:
            yield FailedId(
                id=str(line["id"]),
                status=str(line.get("status", "")),
                reason=str(line.get("reason") or ""),
                chunk=chunk.name,
            )
