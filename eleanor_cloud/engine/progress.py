"""A records stage's progress, and every change to it, as pure functions.

``<prefix>/<task_id>/<stage>/progress.json`` holds the cursor (where the next page of
the stage's input starts: an opaque JSON value the stage defines), the counts, and the
list of *failed chunks*: objects ``<stage>/failed/<name>.jsonl`` holding the ids of the
records that ended ``error`` or ``unprocessed``, at most ``CHUNK_RECORDS`` each. So the
progress object stays small whatever the record count, and one checkpoint is one
compare-and-swap of it (plus a Create per new chunk).

A new attempt that finds failed chunks first re-offers those records (a *retry pass*,
``lookup`` by id), then goes on from the cursor; a suspended attempt (a deadline, a
stop) resumes exactly where it was. No I/O here: :mod:`.records` reads and writes.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from eleanor_cloud.models import RecordStatus, SimpleRecordsResult

__all__ = [
    "CHUNK_RECORDS",
    "Checkpoints",
    "FailedChunk",
    "Progress",
    "RetryPass",
    "begin_attempt",
    "checkpointed",
    "commit_batch",
    "result_of",
]

CHUNK_RECORDS = 1000  # failed ids per chunk object
MAX_CHUNKS = 1000  # chunks kept per stage: a million failed ids; beyond, counted only
ID_LIMIT = 512  # characters of a record id
REASON_LIMIT = 256  # characters of a failure reason kept with its id
CURSOR_LIMIT = 4096  # bytes of a cursor's JSON


class FailedChunk(BaseModel):
    """One chunk object of failed ids, as the progress object refers to it."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    name: str
    errors: int = Field(ge=0)
    unprocessed: int = Field(ge=0)

    @property
    def count(self) -> int:
        return self.errors + self.unprocessed


class RetryPass(BaseModel):
    """Re-offering the failed records of earlier attempts, chunk by chunk."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    chunks: tuple[FailedChunk, ...]
    chunk: int = Field(default=0, ge=0)  # index into chunks
    offset: int = Field(default=0, ge=0)  # records of that chunk already re-offered
    taken_errors: int = Field(default=0, ge=0)  # re-offered so far, by earlier status
    taken_unprocessed: int = Field(default=0, ge=0)

    @property
    def done(self) -> bool:
        return self.chunk >= len(self.chunks)

    @property
    def pending(self) -> tuple[int, int]:
        """(errors, unprocessed) still waiting in this pass."""
        if self.done:
            return 0, 0
        errors = sum(c.errors for c in self.chunks) - self.taken_errors
        unprocessed = sum(c.unprocessed for c in self.chunks) - self.taken_unprocessed
        return max(0, errors), max(0, unprocessed)


class Checkpoints(BaseModel):
    """What the checkpoints of one attempt did, for ``history`` (kept for the last 20)."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    attempt: int = Field(ge=1)
    checkpoints: int = Field(default=0, ge=0)
    batches: int = Field(default=0, ge=0)
    records: int = Field(default=0, ge=0)
    slices: int = Field(default=1, ge=1)  # runs it took (suspended and resumed)
    last_at: str | None = None


class Progress(BaseModel):
    """``<stage>/progress.json``: how far a records stage got, as last checkpointed."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    task_id: str
    stage_name: str
    attempt: int = Field(default=0, ge=0, description="The attempt that wrote it")
    cursor: JsonValue = Field(default=None, description="Where the next unread page starts")
    exhausted: bool = Field(default=False, description="The source has no page past cursor")
    total: int | None = Field(default=None, ge=0, description="Total records, if known")
    offered: int = Field(default=0, ge=0, description="Distinct records read so far")
    success: int = Field(default=0, ge=0)
    batches: int = Field(default=0, ge=0, description="Batches committed (their position)")
    chunk_seq: int = Field(default=0, ge=0, description="Chunk names handed out so far")
    chunks: tuple[FailedChunk, ...] = ()
    dropped_errors: int = Field(default=0, ge=0, description="Failed ids not kept (bound)")
    retry: RetryPass | None = None
    suspended: bool = Field(default=False, description="Stopped cleanly at this checkpoint")
    attempts: tuple[Checkpoints, ...] = ()

    @property
    def errors(self) -> int:
        """Records whose latest outcome is ``error``."""
        pending = self.retry.pending[0] if self.retry is not None else 0
        return sum(c.errors for c in self.chunks) + pending + self.dropped_errors

    @property
    def unprocessed_reported(self) -> int:
        pending = self.retry.pending[1] if self.retry is not None else 0
        return sum(c.unprocessed for c in self.chunks) + pending

    @property
    def finished(self) -> bool:
        """Every record offered and no re-offer left."""
        return self.exhausted and (self.retry is None or self.retry.done)


def result_of(progress: Progress, message: str | None = None) -> SimpleRecordsResult:
    """The stage's counts, computed from what was checkpointed (never by stage code)."""
    total = progress.total if progress.total is not None else progress.offered
    total = max(total, progress.offered)
    fail = progress.errors
    return SimpleRecordsResult(
        total_count=total,
        success_count=progress.success,
        fail_count=fail,
        unprocessed_count=max(0, total - progress.success - fail),
        message=message,
    )


def begin_attempt(progress: Progress, attempt: int, *, can_retry: bool) -> Progress:
    """The progress an attempt starts from.

    The same attempt (resumed after a suspension): unchanged but no longer suspended,
    one more slice. A new attempt: the failed chunks become a retry pass (if the stage
    can look records up by id; else they stay failed), then the cursor goes on. An
    attempt that died mid-pass leaves the rest of its pass to the next one.
    """
    if progress.attempt == attempt:
        log = progress.attempts
        if log and log[-1].attempt == attempt:
            log = (*log[:-1], log[-1].model_copy(update={"slices": log[-1].slices + 1}))
        return progress.model_copy(update={"suspended": False, "attempts": log})
    update: dict[str, Any] = {
        "attempt": attempt,
        "suspended": False,
        "attempts": (*progress.attempts, Checkpoints(attempt=attempt))[-20:],
    }
    unfinished = progress.retry is not None and not progress.retry.done
    if unfinished and progress.retry is not None:
        rest = progress.retry.chunks[progress.retry.chunk :]
        old = progress.retry
        head = old.chunks[old.chunk]
        # What the dead attempt took from the head chunk stays taken (its outcomes are in
        # progress.chunks); count it by the head's mix, the best that is known.
        taken = old.offset
        errors = min(taken, head.errors)
        update["retry"] = RetryPass(
            chunks=(*rest, *progress.chunks),
            chunk=0,
            offset=old.offset,
            taken_errors=errors,
            taken_unprocessed=taken - errors,
        )
        update["chunks"] = ()
    elif progress.chunks and can_retry:
        update["retry"] = RetryPass(chunks=progress.chunks)
        update["chunks"] = ()
    else:
        update["retry"] = None
    return progress.model_copy(update=update)


def commit_batch(
    progress: Progress,
    *,
    outcomes: dict[str, tuple[RecordStatus, str]],
    from_retry: bool,
    retry_taken: tuple[int, int] = (0, 0),
    cursor: JsonValue = None,
    exhausted: bool = False,
    total: int | None = None,
) -> Progress:
    """One batch done (in memory): successes counted, the cursor or the retry pass
    moved on. Its failed ids wait in the caller's buffer until :func:`checkpointed`."""
    ok = sum(1 for status, _ in outcomes.values() if status is RecordStatus.SUCCESS)
    update: dict[str, Any] = {"success": progress.success + ok, "batches": progress.batches + 1}
    if from_retry:
        if progress.retry is None:
            raise ValueError("a retry batch without a retry pass")
        update["retry"] = _advance(progress.retry, len(outcomes), retry_taken)
    else:
        update["cursor"] = cursor
        update["exhausted"] = exhausted
        update["offered"] = progress.offered + len(outcomes)
        if total is not None:
            update["total"] = total
    update["attempts"] = _log(progress, batches=1, records=len(outcomes))
    return progress.model_copy(update=update)


def checkpointed(
    progress: Progress,
    *,
    chunks: tuple[FailedChunk, ...],
    dropped: int,
    at: str,
    new_chunks: int = 0,
    suspended: bool = False,
) -> Progress:
    """The progress a checkpoint writes: ``chunks`` (the ones just written included)
    now belong to it; ``new_chunks`` names were handed out."""
    over = max(0, len(chunks) - MAX_CHUNKS)
    if over:  # bound the progress object: the oldest chunks' errors are only counted
        dropped += sum(c.errors for c in chunks[:over])
        chunks = chunks[over:]
    return progress.model_copy(
        update={
            "chunks": chunks,
            "chunk_seq": progress.chunk_seq + new_chunks,
            "dropped_errors": progress.dropped_errors + dropped,
            "suspended": suspended,
            "attempts": _log(progress, checkpoints=1, last_at=at),
        }
    )


def _log(progress: Progress, *, last_at: str | None = None, **add: int) -> tuple[Any, ...]:
    log = progress.attempts
    if not log or log[-1].attempt != progress.attempt:
        return log
    last = log[-1]
    update: dict[str, Any] = {k: getattr(last, k) + v for k, v in add.items()}
    if last_at is not None:
        update["last_at"] = last_at
    return (*log[:-1], last.model_copy(update=update))


def _advance(retry: RetryPass, count: int, taken: tuple[int, int]) -> RetryPass:
    chunk, offset = retry.chunk, retry.offset + count
    while chunk < len(retry.chunks) and offset >= retry.chunks[chunk].count:
        offset -= retry.chunks[chunk].count
        chunk += 1
    return retry.model_copy(
        update={
            "chunk": chunk,
            "offset": offset if chunk < len(retry.chunks) else 0,
            "taken_errors": retry.taken_errors + taken[0],
            "taken_unprocessed": retry.taken_unprocessed + taken[1],
        }
    )
