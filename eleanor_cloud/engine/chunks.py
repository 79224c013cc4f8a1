"""The failed ids of a records run, written to bounded chunk objects.

A run appends to its *open* chunk (a compare-and-swap of it, with the lines so far plus
the new ones) until it holds ``CHUNK_RECORDS`` ids, then opens the next. The progress
object written right after refers to exactly the lines written; lines past that count
(a checkpoint that did not land) are never read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eleanor_cloud.engine import progress as pg
from eleanor_cloud.models import RecordStatus
from eleanor_cloud.store import documents

if TYPE_CHECKING:
    from eleanor_cloud.engine.records import RecordsEnv

__all__ = ["ChunkWriter"]

_ERROR = RecordStatus.ERROR.value


class ChunkWriter:
    """This run's open chunk: (name, version, lines), appended to until it is full."""

    def __init__(self, env: RecordsEnv) -> None:
        self.env = env
        self._open: tuple[str, Any, list[dict[str, Any]]] | None = None

    def flush(
        self, progress: pg.Progress, lines: list[dict[str, Any]]
    ) -> tuple[tuple[pg.FailedChunk, ...], int, int]:
        """Write ``lines``; return (the progress's chunks, ids dropped, names handed)."""
        env = self.env
        chunks = list(progress.chunks)
        room = max(0, pg.MAX_CHUNKS - len(chunks)) * pg.CHUNK_RECORDS
        if self._open is not None:
            room += pg.CHUNK_RECORDS - len(self._open[2])
        dropped = sum(1 for line in lines[room:] if line["status"] == _ERROR)
        lines, handed = lines[:room], 0
        header = {
            "task_id": env.task_id,
            "stage_name": env.stage_name,
            "attempt": env.attempt,
            "epoch": env.epoch,
        }
        while lines:
            if self._open is None or len(self._open[2]) >= pg.CHUNK_RECORDS:
                # Names carry attempt and epoch: no other holder ever writes this one.
                name = f"a{env.attempt:05d}-e{env.epoch}-{progress.chunk_seq + handed:06d}"
                self._open, handed = (name, None, []), handed + 1
                chunks.append(pg.FailedChunk(name=name, errors=0, unprocessed=0))
            name, version, kept = self._open
            cut = pg.CHUNK_RECORDS - len(kept)
            kept, lines = kept + lines[:cut], lines[cut:]
            version = documents.write_chunk(
                env.store,
                env.task_id,
                env.stage_name,
                name,
                header,
                kept,
                replaces=version,
                shard=env.shard,
            )
            self._open = (name, version, kept)
            errors = sum(1 for ln in kept if ln["status"] == _ERROR)
            chunks[-1] = pg.FailedChunk(name=name, errors=errors, unprocessed=len(kept) - errors)
        return tuple(chunks), dropped, handed
