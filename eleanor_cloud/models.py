"""EleanorAI Task Execution Framework data models.

These classes represent the states, statuses and policies of task execution stages.
They follow the EleanorAI task model specification field for field (names, defaults,
titles, descriptions, constraints, enum values); only obvious typos in descriptions
are fixed. The engine and the state store persist and advance them.
"""

from __future__ import annotations

from enum import Enum
from typing import Generic, List, TypeVar

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ACTIVE_STATES",
    "CANCELABLE_STATES",
    "INACTIVE_STATES",
    "STAGE_NAME_MAX_LENGTH",
    "STAGE_RESULT",
    "BaseStageState",
    "RecordStatus",
    "RetryPolicy",
    "SimpleRecordsResult",
    "StageStateHistoryEntry",
    "StageStatus",
]

STAGE_NAME_MAX_LENGTH = 150


class StageStatus(Enum):
    """Task status enumeration.

    - UNBOUND: Task has not been bound to a task engine.
    - CREATED: Task has been created but not yet started.
    - RUNNING: Task is currently running.
    - RETRY: Task encountered an error and is eligible to be retried.
    - ERROR: Task has encountered an error and cannot be retried.
    - COMPLETE: Task has completed successfully.
    - CANCELED: Task has been canceled.
    """

    UNBOUND = "UNBOUND"
    CREATED = "CREATED"
    RUNNING = "RUNNING"
    RETRY = "RETRY"
    ERROR = "ERROR"
    COMPLETE = "COMPLETE"
    CANCELED = "CANCELED"


ACTIVE_STATES = {StageStatus.CREATED, StageStatus.RUNNING, StageStatus.RETRY}
CANCELABLE_STATES = {
    StageStatus.UNBOUND,
    StageStatus.CREATED,
    StageStatus.RUNNING,
    StageStatus.RETRY,
}
INACTIVE_STATES = {StageStatus.COMPLETE, StageStatus.CANCELED, StageStatus.ERROR}


class RetryPolicy(Enum):
    """Task retry policy enumeration.

    - NONE: No retry policy, a single stage failure will cause the entire task to fail.
    - STAGE: Retry counters are reset for each stage.
    - GLOBAL: Retry counters are shared across all stages, each stage execution
      consumes an attempt - even if it is successful.
    """

    NONE = "NONE"
    STAGE = "STAGE"
    GLOBAL = "GLOBAL"


class RecordStatus(Enum):
    """Record status enumeration."""

    SUCCESS = "success"
    ERROR = "error"
    UNPROCESSED = "unprocessed"


class StageStateHistoryEntry(BaseModel):
    """Stage state history."""

    attempt: int = Field(
        ...,
        ge=0,
        title="Attempt",
        description="Run attempt number corresponding to this history entry",
    )
    begin_status: StageStatus = Field(
        ...,
        title="Begin Status",
        description="Status of the stage prior to the run",
    )
    begin_ts: str = Field(
        ...,
        title="Start Timestamp",
        description="Run start timestamp",
    )
    end_status: StageStatus = Field(
        ...,
        title="End Status",
        description="Status of the stage after the run",
    )
    end_ts: str = Field(
        ...,
        title="End Timestamp",
        description="Run end timestamp",
    )
    message: str = Field(..., title="Message", description="Status message")
    run_time_seconds: float = Field(
        ...,
        title="Run Time",
        description="Stage run time in seconds",
    )


class SimpleRecordsResult(BaseModel):
    """Simple task result model intended to provide useful summary statistics in the RDBMS."""

    total_count: int = Field(
        default=0,
        ge=0,
        title="Total Count",
        description="Total number of records",
    )
    success_count: int = Field(
        default=0,
        ge=0,
        title="Success Count",
        description="Number of successful records",
    )
    fail_count: int = Field(
        default=0,
        ge=0,
        title="Fail Count",
        description="Number of failed records",
    )
    unprocessed_count: int = Field(
        default=0,
        ge=0,
        title="Unprocessed Count",
        description="Number of unprocessed records",
    )
    message: str | None = Field(
        default=None,
        title="Message",
        description="Result message",
    )


STAGE_RESULT = TypeVar("STAGE_RESULT", bound=BaseModel)


class BaseStageState(BaseModel, Generic[STAGE_RESULT]):
    """Base class for stage state data.

    Subclass it to add the fields shared by every stage of a task. All stages in a task
    share the same state class: a deliberate design decision so that the currently
    executing stage has access to all relevant state details of every stage that came
    before it.
    """

    # defer_build: a state class's validator is built on its first use, not when the
    # class is defined, so neither this generic base nor a parametrization that is only
    # subclassed (``BaseStageState[SimpleRecordsResult]``) is built at import.
    model_config = ConfigDict(
        extra="forbid",
        strict=False,
        arbitrary_types_allowed=False,
        defer_build=True,
    )

    task_id: str = Field(default="", title="Task ID", description="Task ID")
    stage_name: str = Field(
        "",
        max_length=STAGE_NAME_MAX_LENGTH,
        title="Stage Name",
        description=(
            "Unique stage name / identifier. This field will be used to generate the state "
            "metadata file/object and persisted during execution"
        ),
    )
    status: StageStatus = Field(
        default=StageStatus.UNBOUND,
        title="Stage Status",
        description=(
            "Stage execution status, used by the task execution engine to determine whether "
            "this state needs to be executed or skipped"
        ),
    )
    attempts: int = Field(
        default=0,
        ge=0,
        title="Run attempts",
        description=(
            "Number of times the stage has been run, value of 0 indicates it has not been "
            "run yet. Primarily used to track retries."
        ),
    )
    # pydantic copies a mutable default per instance, so `[]` is never shared.
    history: List[StageStateHistoryEntry] = Field(
        default=[],
        title="History",
        description="Stage state history",
    )
    result: STAGE_RESULT | None = Field(
        default=None,
        title="Result",
        description=(
            "Contains the stage execution result. The intended use case is to store the "
            "output of the final stage such that external systems can inspect the final "
            "stage to determine the overall result of the task. A value of None indicates "
            "that the stage has not been completed successfully"
        ),
    )
