"""What an attempt lends a records run, and what it takes back when the stage returns.

Kept apart from :mod:`.attempt` (the attempt's own flow) and :mod:`.records` (the
iteration and its checkpoints): this is only the wiring between the two.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from eleanor_cloud.engine.records import RecordsEnv, RecordsFailed, RecordsRun
from eleanor_cloud.errors import InvalidState
from eleanor_cloud.models import StageStatus

if TYPE_CHECKING:
    from eleanor_cloud.engine.attempt import Attempt, AttemptControl
    from eleanor_cloud.engine.checkpoint import Checkpointer, RunState

__all__ = ["Lent", "close_after_failure", "finish"]


class Lent:
    """The at most one records run of an attempt, made on the stage's first call."""

    def __init__(
        self,
        cp: Checkpointer,
        control: AttemptControl,
        run: RunState,
        current: Attempt,
        batch_estimate: float,
        cancelled: Callable[[], bool],
    ) -> None:
        self.cp, self.control, self.run, self.current = cp, control, run, current
        self.batch_estimate, self.cancelled = batch_estimate, cancelled
        self.records: RecordsRun | None = None

    def __call__(self, read: Callable[..., Any], **options: Any) -> RecordsRun:
        cp, run, name, number = self.cp, self.run, self.current.name, self.current.number
        if self.records is not None:
            raise InvalidState(f"stage {name!r}: ctx.records() can be called once per attempt")
        spec = cp.spec

        def emit(kind: Any, message: str, batches: int) -> None:
            cp.reporter.emit(kind, name, number, StageStatus.RUNNING, message, batches)

        def keep(record: Any) -> None:
            run.progress[name] = record

        end = run.end
        env = RecordsEnv(
            store=cp.store,
            task_id=spec.task_id,
            stage_name=name,
            attempt=number,
            epoch=run.epoch,
            clock=spec.clock,
            check_lease=run.lease.check,
            stop_reason=lambda: self.control.stop_reason,
            remaining=lambda: None if end is None else (end - spec.clock()).total_seconds(),
            cancelled=self.cancelled,
            batch_estimate=self.batch_estimate,
            emit=emit,
            progress=run.progress.get(name),
            on_write=keep,
            floor=run.floor,
            monotonic=run.lease.monotonic,  # the engine's notion of elapsed time
        )
        self.records = RecordsRun(env, read, **options)
        return self.records


def finish(lent: Lent, returned: Any, adapter: Any) -> Any:
    """After ``stage.run`` returned: keep what was committed, fail the attempt if
    records failed, and give the computed counts as the result if the stage gave none."""
    records = lent.records
    if records is None:
        return returned
    if not records.finished:
        records.close()  # the stage left the loop early: its committed batches stand
    why = records.outcome_message()
    if why is not None:
        raise RecordsFailed(why)
    if returned is None:
        try:
            return adapter.validate_python(records.result)
        except ValidationError:
            return None  # the state's result type is the stage's own business
    return returned


def close_after_failure(lent: Lent) -> None:
    """After ``stage.run`` raised: keep the batches it committed, never the one in flight."""
    if lent.records is not None:
        lent.records.close()
