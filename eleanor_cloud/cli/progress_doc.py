"""The parts of the ``task`` and ``history`` documents that describe a records stage.

A stage that iterates ``ctx.records(...)`` checkpoints its progress inside the stage
(:mod:`eleanor_cloud.engine.progress`); ``status`` shows it as a stage's ``progress``
(``null`` for any other stage) and ``history`` as ``checkpoints`` per attempt. See
:mod:`.shapes` for the rules every document follows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from eleanor_cloud.cli.documents import Model

if TYPE_CHECKING:
    from eleanor_cloud.cli.records_view import ProgressView
    from eleanor_cloud.cli.views import StageView

__all__ = ["CheckpointRow", "StageProgress", "checkpoint_rows", "stage_progress"]


class StageProgress(Model):
    """A records stage's progress as last checkpointed; the counts are the ones the
    engine computes the stage's ``SimpleRecordsResult`` from."""

    done: int = Field(description="``ok + fail``: records whose outcome is final so far.")
    total: int | None = Field(description="The record count, if the source tells it.")
    ok: int = Field(description="Records that ended ``success``.")
    fail: int = Field(description="Records whose latest outcome is ``error``.")
    unprocessed: int = Field(
        description="Records not done: reported ``unprocessed``, and (``total`` known) "
        "not read yet."
    )
    offered: int = Field(description="Distinct records read from the source so far.")
    exhausted: bool = Field(description="The source was read to its end.")
    finished: bool = Field(description="Every record offered and no re-offer left.")
    suspended: bool = Field(
        description="The attempt stopped cleanly at this checkpoint (a deadline, a stop "
        "request): the next run resumes it from here."
    )
    attempt: int = Field(description="The attempt that last wrote the progress.")
    batches: int = Field(description="Batches committed so far (over all attempts).")
    checkpointed_at: str = Field(
        description="When the progress was last written (the last checkpoint, or the start "
        "of the attempt's latest slice)."
    )
    failed_ids: int = Field(description="Failed record ids kept: what ``failed`` lists.")
    failed_ids_dropped: int = Field(
        description="Error records counted but whose ids were not kept (over the bound)."
    )
    retry_pending: int | None = Field(
        description="Failed records of earlier attempts still to re-offer in this attempt's "
        "retry pass; ``null``: no retry pass."
    )
    cursor: Any = Field(description="Where the next unread page starts (the stage's JSON).")


class CheckpointRow(Model):
    """What the checkpoints of one attempt of a records stage did (the latest 20)."""

    stage: str
    attempt: int
    slices: int = Field(description="Runs the attempt took (suspended, then resumed).")
    checkpoints: int
    batches: int
    records: int = Field(description="Records the attempt's batches held.")
    last_at: str | None = Field(description="When the attempt last checkpointed.")
    suspended: bool = Field(description="The attempt is suspended now, waiting to be resumed.")


def stage_progress(view: ProgressView) -> StageProgress:
    p = view.progress
    return StageProgress(
        done=view.done,
        total=view.total,
        ok=view.ok,
        fail=view.fail,
        unprocessed=view.unprocessed,
        offered=p.offered,
        exhausted=p.exhausted,
        finished=p.finished,
        suspended=p.suspended,
        attempt=p.attempt,
        batches=p.batches,
        checkpointed_at=view.checkpointed_at,
        failed_ids=view.failed_ids,
        failed_ids_dropped=p.dropped_errors,
        retry_pending=view.retry_pending,
        cursor=p.cursor,
    )


def checkpoint_rows(stage: StageView) -> list[CheckpointRow]:
    """One row per attempt the stage's progress logged, oldest first."""
    if stage.progress is None:
        return []
    p = stage.progress.progress
    return [
        CheckpointRow(
            stage=stage.name,
            suspended=p.suspended and log.attempt == p.attempt,
            **log.model_dump(),
        )
        for log in p.attempts
    ]
