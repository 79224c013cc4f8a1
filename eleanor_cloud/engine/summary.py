"""TaskSummary: what a task looks like from its stored stage states."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from eleanor_cloud.models import BaseStageState, StageStatus

__all__ = ["StageSummary", "TaskSummary", "overall_status", "summarize"]


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value


@dataclass(frozen=True, slots=True)
class StageSummary:
    """One stage: status, attempts, the last history message and run time, result."""

    name: str
    status: StageStatus
    attempts: int = 0
    last_message: str | None = None
    last_run_seconds: float | None = None
    result: Any = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (enums as their values, results as plain data)."""
        return {
            "name": self.name,
            "status": self.status.value,
            "attempts": self.attempts,
            "last_message": self.last_message,
            "last_run_seconds": self.last_run_seconds,
            "result": _jsonable(self.result),
        }


@dataclass(frozen=True, slots=True)
class TaskSummary:
    """The state of a whole task.

    ``status`` is the task's overall status (see :func:`overall_status`); ``done`` is
    true once it is COMPLETE, ERROR or CANCELED; ``next_stage`` is the first stage not
    yet COMPLETE while the task is not done; ``result`` is the final stage's result.
    ``message`` says why a run stopped early (deadline, cancel), else ``""``.
    """

    task_id: str
    status: StageStatus
    done: bool
    next_stage: str | None
    stages: list[StageSummary] = field(default_factory=list)
    result: Any = None
    message: str = ""

    def stage(self, name: str) -> StageSummary:
        """The summary of one stage by name (``KeyError`` if the task has no such stage)."""
        for entry in self.stages:
            if entry.name == name:
                return entry
        raise KeyError(f"task {self.task_id!r} has no stage {name!r}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict, e.g. for ``eleanor-cloud status --json``."""
        return {
            "task_id": self.task_id,
            "status": self.status.value,
            "done": self.done,
            "next_stage": self.next_stage,
            "message": self.message,
            "result": _jsonable(self.result),
            "stages": [s.to_dict() for s in self.stages],
        }


def overall_status(statuses: Sequence[StageStatus]) -> StageStatus:
    """The task's status from its stages' statuses, in stage order.

    CANCELED if any stage is canceled, else ERROR if any failed for good, else COMPLETE
    if all completed, else UNBOUND/CREATED if none has started, else RUNNING (in
    progress, including stages waiting to be retried).
    """
    present = set(statuses)
    if StageStatus.CANCELED in present:
        return StageStatus.CANCELED
    if StageStatus.ERROR in present:
        return StageStatus.ERROR
    if present == {StageStatus.COMPLETE}:
        return StageStatus.COMPLETE
    if present <= {StageStatus.UNBOUND}:
        return StageStatus.UNBOUND
    if present <= {StageStatus.UNBOUND, StageStatus.CREATED}:
        return StageStatus.CREATED
    return StageStatus.RUNNING


def summarize(
    task_id: str,
    stage_names: Sequence[str],
    states: Mapping[str, BaseStageState[Any]],
    *,
    bound: bool = True,
    force_status: StageStatus | None = None,
    message: str = "",
) -> TaskSummary:
    """Build a summary; a listed stage with no stored state reads as CREATED if bound."""
    missing = StageStatus.CREATED if bound else StageStatus.UNBOUND
    stages: list[StageSummary] = []
    for name in stage_names:
        state = states.get(name)
        if state is None:
            stages.append(StageSummary(name, missing))
            continue
        last = state.history[-1] if state.history else None
        stages.append(
            StageSummary(
                name,
                state.status,
                state.attempts,
                last.message if last else None,
                last.run_time_seconds if last else None,
                state.result,
            )
        )
    status = force_status or overall_status([s.status for s in stages])
    done = status in (StageStatus.COMPLETE, StageStatus.ERROR, StageStatus.CANCELED)
    next_stage = None
    if not done:
        next_stage = next((s.name for s in stages if s.status is not StageStatus.COMPLETE), None)
    result = stages[-1].result if stages else None
    return TaskSummary(task_id, status, done, next_stage, stages, result, message)
