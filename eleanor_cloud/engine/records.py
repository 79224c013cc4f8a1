"""Record-level checkpoints inside a stage: ``ctx.records(read, ...)``.

The stage reads its input a page at a time from a cursor it defines (an offset, an S3
``StartAfter`` key, a page token) and reports each record's :class:`RecordStatus`; the
engine checkpoints after a batch, at most once per interval (``checkpoint_every``
seconds or ``checkpoint_records`` records, whichever comes first) and always before it
stops for a deadline, a stop request or a cancel. A checkpoint is one compare-and-swap
of ``<stage>/progress.json`` at the lease's epoch (after a Create per chunk of failed
ids), so a holder that was fenced out can never move the cursor or the counts.

Delivery: at least once. After a crash, only the records of the batches since the last
checkpoint are offered again, each batch with the same ``batch.key`` (task, stage,
batch position) as before, for a sink to deduplicate. The counts
(``SimpleRecordsResult``) are computed from what was checkpointed.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import JsonValue

from eleanor_cloud.clock import Clock, format_ts
from eleanor_cloud.engine import progress as pg
from eleanor_cloud.engine.batch import Batch, Page, default_id
from eleanor_cloud.engine.chunks import ChunkWriter
from eleanor_cloud.errors import Conflict, EleanorError, InvalidState, LeaseLost
from eleanor_cloud.models import RecordStatus, SimpleRecordsResult
from eleanor_cloud.store import documents
from eleanor_cloud.store.records import Record
from eleanor_cloud.store.state_store import StateStore

__all__ = ["RecordsEnv", "RecordsFailed", "RecordsRun", "Suspended"]


class Suspended(BaseException):
    """Internal: the attempt stopped cleanly at a checkpoint (deadline or stop request).

    A BaseException so that a stage's own ``except Exception`` cannot swallow it.
    """

    def __init__(self, message: str, *, batches: int) -> None:
        super().__init__(message)
        self.message = message
        self.batches = batches  # batches this slice got through


class RecordsFailed(Exception):
    """The stage offered every record, and some ended ``error`` or ``unprocessed``."""


@dataclass
class RecordsEnv:
    """What the engine lends a records run (see :mod:`.attempt`)."""

    store: StateStore
    task_id: str
    stage_name: str
    attempt: int
    epoch: int
    clock: Clock
    check_lease: Callable[[], None]
    stop_reason: Callable[[], str | None]
    remaining: Callable[[], float | None]
    cancelled: Callable[[], bool]
    batch_estimate: float
    emit: Callable[[str, str, int], None]  # (kind, message, batches this slice)
    progress: Record[pg.Progress] | None = None
    on_write: Callable[[Record[pg.Progress]], None] = lambda record: None
    floor: int = 0  # the lease's deletion floor: a progress at or below it is a leftover
    shard: str | None = None  # a fanned-out stage's shard: its own progress and chunks
    progress_loaded: bool = False  # ``progress`` was read already (None: there is none)
    monotonic: Callable[[], float] = field(default=time.monotonic)


class RecordsRun:
    """What ``ctx.records(...)`` returns: iterate it for batches; ``result`` after."""

    def __init__(
        self,
        env: RecordsEnv,
        read: Callable[[JsonValue, int], Page],
        *,
        lookup: Callable[[list[str]], Iterable[Any]] | None = None,
        id_of: Callable[[Any], str] = default_id,
        batch_size: int = 100,
        checkpoint_every: float = 5.0,
        checkpoint_records: int = 10_000,
        tolerate_failures: bool = False,
    ) -> None:
        where = f"stage {env.stage_name!r} of task {env.task_id!r}"
        if env.shard is not None:
            where = f"shard {env.shard!r} of {where}"
        if not callable(read):
            raise InvalidState(f"{where}: records(read=...) must be callable, got {read!r}")
        if lookup is not None and not callable(lookup):
            raise InvalidState(f"{where}: lookup must be callable, got {lookup!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidState(f"{where}: batch_size must be an int >= 1, got {batch_size!r}")
        if not checkpoint_every >= 0:
            raise InvalidState(f"{where}: checkpoint_every must be >= 0 seconds")
        if isinstance(checkpoint_records, bool) or not checkpoint_records >= 1:
            raise InvalidState(f"{where}: checkpoint_records must be >= 1")
        self.env, self.where = env, where
        self._read, self._lookup, self._id_of = read, lookup, id_of
        self.batch_size = batch_size
        self.checkpoint_every, self.checkpoint_records = float(checkpoint_every), checkpoint_records
        self.tolerate_failures = tolerate_failures
        self._record: Record[pg.Progress] | None = None
        self._progress: pg.Progress | None = None
        self._pending: Batch | None = None  # yielded, not yet committed
        self._buffer: list[dict[str, Any]] = []  # failed ids since the last checkpoint
        self._since, self._last, self._slow = 0, 0.0, 0.0
        self._slice_batches = 0
        self._retry_lines: list[dict[str, Any]] = []
        self._chunks = ChunkWriter(env)
        self.started = self.finished = False

    # -- what the engine reads -----------------------------------------------------------

    @property
    def progress(self) -> pg.Progress:
        if self._progress is None:
            raise InvalidState(f"{self.where}: records() was never iterated")
        return self._progress

    @property
    def result(self) -> SimpleRecordsResult:
        return pg.result_of(self.progress)

    # -- iteration -----------------------------------------------------------------------

    def __iter__(self) -> Iterator[Batch]:
        if self.started:
            return self  # iter() of the iterator itself: go on where it is
        self.started = True
        env = self.env
        loaded = env.progress
        if loaded is None and not env.progress_loaded:
            loaded = documents.load_progress(
                env.store, env.task_id, env.stage_name, pg.Progress, shard=env.shard
            )
        base = pg.Progress(task_id=env.task_id, stage_name=env.stage_name)
        if loaded is not None and not (env.floor > 0 and loaded.epoch <= env.floor):
            base = loaded.value  # (at or below the floor: a deleted task's leftover)
        self._record = loaded
        self._progress = pg.begin_attempt(base, env.attempt, can_retry=self._lookup is not None)
        self._write(self._progress)  # a resumed slice is no longer "suspended" from here on
        self._last = env.monotonic()
        return self

    def __next__(self) -> Batch:
        self._commit_pending()
        if self.progress.finished:  # the last batch fitted: end now, not at a deadline
            return self._end()
        reason = self._must_stop()
        if reason is not None:
            self.checkpoint(suspended=True)
            raise Suspended(reason, batches=self._slice_batches)
        batch = self._next_batch()
        if batch is None:
            return self._end()
        self._pending, self._started_at = batch, self.env.monotonic()
        return batch

    def _end(self) -> Batch:
        self.checkpoint()
        self.finished = True
        raise StopIteration

    def _commit_pending(self) -> None:
        batch, self._pending = self._pending, None
        if batch is None:
            return
        self._slow = max(self._slow, self.env.monotonic() - self._started_at)
        outcomes = batch.outcomes()
        failed = [
            (rid, st, why) for rid, (st, why) in outcomes.items() if st is not RecordStatus.SUCCESS
        ]
        failed.sort(key=lambda row: row[1] is not RecordStatus.ERROR)  # errors first
        self._buffer += [{"id": rid, "status": st.value, "reason": why} for rid, st, why in failed]
        page = getattr(batch, "page", None)
        self._progress = pg.commit_batch(
            self.progress,
            outcomes=outcomes,
            from_retry=batch.retry,
            retry_taken=getattr(batch, "taken", (0, 0)),
            cursor=page.cursor if page else None,
            exhausted=page.cursor is None if page else False,
            total=page.total if page else None,
        )
        self._since += len(outcomes)
        self._slice_batches += 1
        due = self.env.monotonic() - self._last >= self.checkpoint_every
        if due or self._since >= self.checkpoint_records:
            self.checkpoint()

    def _must_stop(self) -> str | None:
        env = self.env
        env.check_lease()
        stop = env.stop_reason()
        if stop is not None:
            return f"stop requested: {stop}"
        left = env.remaining()
        need = max(self._slow, env.batch_estimate) * 1.2 + 0.5
        if left is not None and left < need:
            return f"deadline: {max(left, 0):.3f}s left, a batch needs about {need:.3f}s"
        if env.cancelled():
            env.check_lease()  # fenced out: nothing can be written any more
            self.checkpoint()
            raise RecordsFailed(f"{self.where}: canceled at batch {self.progress.batches}")
        return None

    def _next_batch(self) -> Batch | None:
        progress, env = self.progress, self.env
        scope = env.stage_name if env.shard is None else f"{env.stage_name}/{env.shard}"
        key = f"{env.task_id}/{scope}/{progress.batches}"
        retry = progress.retry
        if retry is not None and not retry.done:
            if not self._retry_lines:
                chunk = retry.chunks[retry.chunk]
                lines = documents.read_chunk(
                    env.store,
                    env.task_id,
                    env.stage_name,
                    chunk.name,
                    chunk.count,
                    shard=env.shard,
                )
                self._retry_lines = lines[retry.offset :]
            take, self._retry_lines = (
                self._retry_lines[: self.batch_size],
                self._retry_lines[self.batch_size :],
            )
            ids = [str(line["id"]) for line in take]
            assert self._lookup is not None  # no retry pass is begun without a lookup
            items = list(self._lookup(ids))
            if len(items) != len(ids):
                raise InvalidState(
                    f"{self.where}: lookup returned {len(items)} records for {len(ids)} ids"
                )
            batch = Batch(items, ids, key, progress.batches, retry=True)
            errors = sum(1 for line in take if line.get("status") == RecordStatus.ERROR.value)
            batch.taken = (errors, len(take) - errors)  # type: ignore[attr-defined]
            return batch
        if progress.exhausted:
            return None
        page = self._read(progress.cursor, self.batch_size)
        if not isinstance(page, Page):
            raise InvalidState(
                f"{self.where}: read() must return a Page, got {type(page).__name__}"
            )
        self._check_cursor(page.cursor)
        items = list(page.items)
        if len(items) > self.batch_size:
            raise InvalidState(
                f"{self.where}: read() returned {len(items)} records for a limit of "
                f"{self.batch_size}"
            )
        ids = [self._checked_id(item) for item in items]
        if len(set(ids)) != len(ids):
            raise InvalidState(f"{self.where}: a page holds the same record id twice")
        batch = Batch(items, ids, key, progress.batches, retry=False)
        batch.page = page  # type: ignore[attr-defined]
        return batch

    def _checked_id(self, item: Any) -> str:
        rid = self._id_of(item)
        if not isinstance(rid, str) or not rid or len(rid) > pg.ID_LIMIT:
            raise InvalidState(
                f"{self.where}: record id must be a string of 1-{pg.ID_LIMIT} characters, "
                f"got {rid!r}"
            )
        return rid

    def _check_cursor(self, cursor: Any) -> None:
        try:
            size = len(json.dumps(cursor, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise InvalidState(
                f"{self.where}: field 'cursor' is not JSON-serializable: {exc}"
            ) from exc
        if size > pg.CURSOR_LIMIT:
            raise InvalidState(
                f"{self.where}: field 'cursor' is {size} bytes of JSON (limit {pg.CURSOR_LIMIT})"
            )

    # -- checkpoints ---------------------------------------------------------------------

    def checkpoint(self, *, suspended: bool = False) -> None:
        """Write the failed ids since the last checkpoint, then the progress (one CAS)."""
        env = self.env
        env.check_lease()
        chunks, dropped, handed = self._flush_chunks()
        at = format_ts(env.clock())
        self._progress = pg.checkpointed(
            self.progress,
            chunks=chunks,
            dropped=dropped,
            at=at,
            new_chunks=handed,
            suspended=suspended,
        )
        self._write(self._progress)
        self._since, self._last = 0, env.monotonic()
        r = self.result
        done = f"{r.success_count + r.fail_count}/{r.total_count}"
        what = "suspended at" if suspended else "checkpoint"
        env.emit(
            "stage_checkpointed",
            f"{what} batch {self.progress.batches}: {done} records, {r.fail_count} failed",
            self._slice_batches,
        )

    def close(self) -> None:
        """After the stage raised: keep what was committed (never the batch in flight)."""
        if not self.started or self.finished or self._progress is None:
            return
        # Fenced out, or the store failed: then the last checkpoint stands.
        with contextlib.suppress(EleanorError):
            self.checkpoint()

    def _flush_chunks(self) -> tuple[tuple[pg.FailedChunk, ...], int, int]:
        lines, self._buffer = self._buffer, []
        return self._chunks.flush(self.progress, lines)

    def _write(self, progress: pg.Progress) -> None:
        env = self.env
        try:
            self._record = documents.save_progress(
                env.store,
                progress,
                task_id=env.task_id,
                stage_name=env.stage_name,
                shard=env.shard,
                replaces=self._record,
                epoch=env.epoch,
            )
        except Conflict as exc:
            now = exc.current if isinstance(exc.current, Record) else None
            who = f"{now.writer!r} at epoch {now.epoch}" if now else "another writer"
            raise LeaseLost(
                f"{self.where}: its progress was written by {who} (ours {env.epoch}): "
                "fenced out, this holder stops"
            ) from exc
        env.on_write(self._record)  # the run's next attempt replaces this one

    def outcome_message(self) -> str | None:
        """Why a finished run counts as a failed attempt, or ``None`` if it does not."""
        if self.tolerate_failures or not self.finished:
            return None
        p = self.progress
        if p.errors or p.unprocessed_reported:
            return (
                f"{p.errors} record(s) failed and {p.unprocessed_reported} were left "
                f"unprocessed; their ids are under {env_key(self.env)}"
            )
        return None


def env_key(env: RecordsEnv) -> str:
    from eleanor_cloud import keys

    return (
        keys.progress_key(env.store.prefix, env.task_id, env.stage_name, env.shard).rsplit("/", 1)[
            0
        ]
        + "/failed/"
    )
