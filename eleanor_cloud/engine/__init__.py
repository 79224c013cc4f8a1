"""The task engine: run a task's stages with checkpoints, retries, a lease and fencing.

Import from here (or lazily from ``eleanor_cloud``)::

    from eleanor_cloud.engine import BaseStage, StageContext, TaskEngine, TaskSummary

Store-only operations for tools that do not have the stage code (the CLI):
:func:`task_status`, :func:`cancel_task`, :func:`retry_failed_task`,
:func:`rollback_task`, :func:`delete_task`; they read states through
:class:`AnyStageState` by default.

The modules behind it, for readers: :mod:`.transitions` (every status change, pure),
:mod:`.attempt` (one attempt, the interrupt handshake), :mod:`.run` (open, the loop,
endings), :mod:`.saga` (rollback), :mod:`.admin` (store-only operations),
:mod:`.options` (argument checks), :mod:`.lease` and :mod:`.fence` (exclusivity).
"""

from eleanor_cloud.engine.admin import (
    cancel_task,
    delete_task,
    retry_failed_task,
    rollback_task,
    task_status,
)
from eleanor_cloud.engine.anystate import AnyStageState
from eleanor_cloud.engine.backoff import Backoff
from eleanor_cloud.engine.batch import Batch, Page
from eleanor_cloud.engine.engine import TaskEngine
from eleanor_cloud.engine.events import EngineEvent, EventKind
from eleanor_cloud.engine.fanout import Shard
from eleanor_cloud.engine.stage import BaseStage, StageContext
from eleanor_cloud.engine.summary import StageSummary, TaskSummary

__all__ = [
    "AnyStageState",
    "Backoff",
    "BaseStage",
    "Batch",
    "EngineEvent",
    "EventKind",
    "Page",
    "Shard",
    "StageContext",
    "StageSummary",
    "TaskEngine",
    "TaskSummary",
    "cancel_task",
    "delete_task",
    "retry_failed_task",
    "rollback_task",
    "task_status",
]
