"""BaseStage (what users subclass) and StageContext (what a running stage may ask)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from eleanor_cloud.errors import InvalidState
from eleanor_cloud.keys import validate_stage_name
from eleanor_cloud.models import BaseStageState

__all__ = ["BaseStage", "StageContext", "StateT"]

# A string bound: subscripting a pydantic generic at import time builds a model class.
StateT = TypeVar("StateT", bound="BaseStageState[Any]")


class BaseStage(Generic[StateT]):
    """One step of a task. Subclass it and implement :meth:`run`.

    ``name`` (class attribute or constructor argument) is the stage name: one safe path
    segment, unique within the task. ``expected_duration`` (seconds) lets a run with a
    time budget skip starting a stage that cannot finish in time.

    ``run`` receives a private copy of the stage's state and returns the stage's result
    (an instance of the state class's ``result`` type) or ``None`` after setting fields
    on ``state``. Raising is a failed attempt; the engine then discards the changes made
    to ``state`` during that attempt.
    """

    name: str = ""
    expected_duration: float | None = None

    def __init__(self, name: str | None = None, *, expected_duration: float | None = None) -> None:
        if name is not None:
            # An instance attribute shadows the class attribute: one class, many stages.
            self.name = name
        if expected_duration is not None:
            self.expected_duration = expected_duration

    @property
    def stage_name(self) -> str:
        """The validated stage name (``InvalidKey`` if unsafe or missing)."""
        name = self.name
        if not name:
            raise InvalidState(
                f"stage {type(self).__name__} has no name: set the class attribute `name` "
                "or pass name=... to the constructor"
            )
        return validate_stage_name(name)

    def run(self, state: StateT, ctx: StageContext[StateT]) -> BaseModel | None:
        """Do the stage's work; return its result or ``None``. Raise to fail the attempt."""
        raise NotImplementedError(f"{type(self).__name__}.run() is not implemented")

    def plan(self, state: StateT, ctx: StageContext[StateT]) -> Sequence[Any] | None:
        """Define it to fan the stage out: return the shards (``eleanor_cloud.Shard(id,
        spec)``) its input splits into. Planned once per stage run, persisted; each
        shard then runs ``run()`` on its own worker with ``ctx.shard`` set and its own
        ``ctx.records`` checkpoints. See :mod:`eleanor_cloud.engine.fanout`."""
        return None

    def rollback(self, state: StateT, ctx: StageContext[StateT]) -> None:
        """Undo the stage's effects (called by ``TaskEngine.rollback``); default: nothing."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class StageContext(Generic[StateT]):
    """What a running stage may ask the engine.

    ``state_of``/``result_of`` give deep copies of *earlier* stages' states (asking for
    the current or a later stage is an error: their state is not settled). ``cancelled``
    turns true once the task was canceled or this holder lost its lease; a long stage
    should poll it and return early.
    """

    def __init__(
        self,
        *,
        task_id: str,
        stage_name: str,
        attempt: int,
        logger: logging.LoggerAdapter[logging.Logger],
        stage_order: Sequence[str],
        states: Mapping[str, StateT],
        remaining_time: Callable[[], float | None],
        cancelled: Callable[[], bool],
        records: Callable[..., Any] | None = None,
        shard: tuple[str, Any, str] | None = None,
    ) -> None:
        self.task_id = task_id
        self.stage_name = stage_name
        self.attempt = attempt
        self.logger = logger
        self._order = list(stage_order)
        self._states = states
        self._remaining = remaining_time
        self._cancelled = cancelled
        self._records = records
        self._shard = shard

    def state_of(self, stage_name: str) -> StateT:
        """A deep copy of an earlier stage's state."""
        if stage_name not in self._order:
            raise InvalidState(
                f"task {self.task_id!r} has no stage {stage_name!r} (stages: {self._order})"
            )
        if self._order.index(stage_name) >= self._order.index(self.stage_name):
            raise InvalidState(
                f"stage {self.stage_name!r} may only read earlier stages; {stage_name!r} "
                "is not before it"
            )
        return self._states[stage_name].model_copy(deep=True)

    def result_of(self, stage_name: str) -> BaseModel | None:
        """The result of an earlier stage (a copy), or ``None`` if it has none."""
        result: BaseModel | None = self.state_of(stage_name).result
        return result

    def remaining_time(self) -> float | None:
        """Seconds left in the run's time budget, or ``None`` without a budget."""
        return self._remaining()

    @property
    def shard(self) -> Any:
        """The shard this run works on (a sharded stage: ``.id``, ``.spec``), else None."""
        if self._shard is None:
            return None
        from eleanor_cloud.engine.fanout import Shard

        return Shard(self._shard[0], self._shard[1])

    def records(self, read: Callable[..., Any], **options: Any) -> Any:
        """Process the stage's input record by record, with checkpoints inside the stage.

        ``read(cursor, limit)`` returns a :class:`~eleanor_cloud.engine.Page` of at most
        ``limit`` records starting at ``cursor`` (``None`` the first time; a JSON value
        the stage defines). Iterate the result for batches and report each record::

            for batch in ctx.records(read, lookup=fetch_by_ids, batch_size=100):
                for item in batch:
                    try:
                        sink.put(item, idempotency_key=batch.key)
                        batch.ok(item)
                    except Exception as exc:
                        batch.fail(item, str(exc))

        Options: ``lookup(ids) -> records`` (to re-offer failed records on a retry),
        ``id_of(record) -> str``, ``batch_size`` (100), ``checkpoint_every`` seconds (5)
        and ``checkpoint_records`` (10,000), ``tolerate_failures`` (False: failed records
        fail the attempt). Returning ``None`` leaves the engine's computed
        ``SimpleRecordsResult`` as the stage's result. See :mod:`.records`.
        """
        if self._records is None:
            raise InvalidState(f"stage {self.stage_name!r}: records() is only for run()")
        return self._records(read, **options)

    @property
    def cancelled(self) -> bool:
        """True once the task is canceled or the lease was lost (checks are rate-limited)."""
        return self._cancelled()
