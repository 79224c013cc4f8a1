"""TaskEngine: bind, run/resume, cancel, rollback and redrive one task."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Generic

from eleanor_cloud.clock import Clock, utc_now
from eleanor_cloud.engine.events import EventHandler
from eleanor_cloud.engine.retry import Backoff
from eleanor_cloud.engine.stage import BaseStage, StateT
from eleanor_cloud.engine.summary import TaskSummary
from eleanor_cloud.models import RetryPolicy
from eleanor_cloud.store.records import TaskManifest
from eleanor_cloud.store.state_store import StateStore

__all__ = ["TaskEngine"]


class TaskEngine(Generic[StateT]):
    """Runs one task's stages in order, checkpointing each attempt into ``store``."""

    def __init__(
        self,
        task_id: str,
        stages: Sequence[BaseStage[StateT]],
        state_class: type[StateT],
        store: StateStore,
        *,
        retry_policy: RetryPolicy = RetryPolicy.STAGE,
        max_attempts: int = 3,
        backoff: Backoff | None = None,
        lease_ttl: float = 60.0,
        wait_for_lease: float = 0.0,
        on_event: EventHandler | None = None,
        auto_rollback: bool = False,
        clock: Clock = utc_now,
        sleep: Callable[[float], None] = time.sleep,
        holder: str | None = None,
        metadata: dict[str, str] | None = None,
        clock_skew_tolerance: float = 5.0,
        renew_interval: float | None = None,
        cancel_check_interval: float = 5.0,
    ) -> None:
        raise NotImplementedError

    def bind(self) -> TaskManifest:
        """Write the task manifest, or check the stored one matches."""
        raise NotImplementedError

    def run(self, *, deadline: datetime | None = None,
            time_budget: float | None = None) -> TaskSummary:
        """Run or resume the task until it completes, fails, is canceled or runs out of time."""
        raise NotImplementedError

    def status(self) -> TaskSummary:
        """Read-only summary of the task."""
        raise NotImplementedError

    def cancel(self) -> TaskSummary:
        """Cancel the task (see :func:`cancel_task`)."""
        raise NotImplementedError

    def rollback(self, to_stage: str) -> TaskSummary:
        """Roll completed stages back from the last down to ``to_stage``."""
        raise NotImplementedError

    def retry_failed(self) -> TaskSummary:
        """Redrive ERROR stages with a fresh budget (see :func:`retry_failed_task`)."""
        raise NotImplementedError

    def _unused(self) -> Any:  # pragma: no cover - placeholder while the skeleton lands
        return datetime
