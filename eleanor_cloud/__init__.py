"""eleanor_cloud: checkpoint stage-based tasks into S3 or any object store, safely.

``import eleanor_cloud`` loads only pydantic, the seed models and the error tree; the
store and engine load on first use, and boto3, fsspec and the CLI only when a store or
command that needs them is opened.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eleanor_cloud.backends.base import (
    CREATE,
    OVERWRITE,
    Create,
    ObjectBackend,
    Overwrite,
    Replace,
    Version,
    WriteMode,
)
from eleanor_cloud.errors import (
    AccessDenied,
    AlreadyExists,
    BackendError,
    BucketNotFound,
    ConfigurationError,
    Conflict,
    CorruptState,
    EleanorError,
    InvalidKey,
    InvalidState,
    LeaseHeld,
    LeaseLost,
    MissingDependency,
    NotFound,
    NotSupported,
    TaskBindingError,
    Unavailable,
)
from eleanor_cloud.models import (
    ACTIVE_STATES,
    CANCELABLE_STATES,
    INACTIVE_STATES,
    STAGE_NAME_MAX_LENGTH,
    STAGE_RESULT,
    BaseStageState,
    RecordStatus,
    RetryPolicy,
    SimpleRecordsResult,
    StageStateHistoryEntry,
    StageStatus,
)

if TYPE_CHECKING:
    from eleanor_cloud.engine import (
        AnyStageState,
        Backoff,
        BaseStage,
        Batch,
        EngineEvent,
        Page,
        Shard,
        StageContext,
        StageSummary,
        TaskEngine,
        TaskSummary,
    )
    from eleanor_cloud.store import (
        Lease,
        Record,
        StateStore,
        TaskManifest,
        open_store,
        register_backend,
    )

__version__ = "0.1.0"

# The store and the engine load on first use, so `import eleanor_cloud` costs little
# more than pydantic and the seed models: a Lambda cold start pays for what it uses.
_LAZY = {
    "Lease": "eleanor_cloud.store",
    "Record": "eleanor_cloud.store",
    "StateStore": "eleanor_cloud.store",
    "TaskManifest": "eleanor_cloud.store",
    "open_store": "eleanor_cloud.store",
    "register_backend": "eleanor_cloud.store",
    "AnyStageState": "eleanor_cloud.engine",
    "Backoff": "eleanor_cloud.engine",
    "EngineEvent": "eleanor_cloud.engine",
    "StageSummary": "eleanor_cloud.engine",
    "BaseStage": "eleanor_cloud.engine",
    "Batch": "eleanor_cloud.engine",
    "Page": "eleanor_cloud.engine",
    "Shard": "eleanor_cloud.engine",
    "StageContext": "eleanor_cloud.engine",
    "TaskEngine": "eleanor_cloud.engine",
    "TaskSummary": "eleanor_cloud.engine",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'eleanor_cloud' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "ACTIVE_STATES",
    "CANCELABLE_STATES",
    "CREATE",
    "INACTIVE_STATES",
    "OVERWRITE",
    "STAGE_NAME_MAX_LENGTH",
    "STAGE_RESULT",
    "AccessDenied",
    "AlreadyExists",
    "AnyStageState",
    "BackendError",
    "Backoff",
    "BaseStage",
    "BaseStageState",
    "Batch",
    "BucketNotFound",
    "ConfigurationError",
    "Conflict",
    "CorruptState",
    "Create",
    "EleanorError",
    "EngineEvent",
    "InvalidKey",
    "InvalidState",
    "Lease",
    "LeaseHeld",
    "LeaseLost",
    "MissingDependency",
    "NotFound",
    "NotSupported",
    "ObjectBackend",
    "Overwrite",
    "Page",
    "Record",
    "RecordStatus",
    "Replace",
    "RetryPolicy",
    "Shard",
    "SimpleRecordsResult",
    "StageContext",
    "StageStateHistoryEntry",
    "StageStatus",
    "StageSummary",
    "StateStore",
    "TaskBindingError",
    "TaskEngine",
    "TaskManifest",
    "TaskSummary",
    "Unavailable",
    "Version",
    "WriteMode",
    "__version__",
    "open_store",
    "register_backend",
]
