"""The task engine: run a task's stages with checkpoints, retries, a lease and fencing.

Import from here (or lazily from ``eleanor_cloud``)::

    from eleanor_cloud.engine import BaseStage, StageContext, TaskEngine, TaskSummary

Store-only operations for tools that do not have the stage code (the CLI):
:func:`task_status`, :func:`cancel_task`, :func:`retry_failed_task`,
:func:`rollback_task`; they read states through :class:`AnyStageState` by default.
"""

from eleanor_cloud.engine.anystate import AnyStageState
from eleanor_cloud.engine.engine import TaskEngine
from eleanor_cloud.engine.events import EngineEvent, EventKind
from eleanor_cloud.engine.lease import LeaseManager
from eleanor_cloud.engine.operations import (
    cancel_task,
    fence_task,
    retry_failed_task,
    rollback_task,
    task_status,
)
from eleanor_cloud.engine.retry import Backoff
from eleanor_cloud.engine.stage import BaseStage, StageContext
from eleanor_cloud.engine.summary import StageSummary, TaskSummary

__all__ = [
    "AnyStageState",
    "Backoff",
    "BaseStage",
    "EngineEvent",
    "EventKind",
    "LeaseManager",
    "StageContext",
    "StageSummary",
    "TaskEngine",
    "TaskSummary",
    "cancel_task",
    "fence_task",
    "retry_failed_task",
    "rollback_task",
    "task_status",
]
