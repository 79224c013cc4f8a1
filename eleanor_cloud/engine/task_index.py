"""Find tasks by status, prefix or change time without reading every task.

(Interface first; the status-partitioned index behind it lands in the next commits.
Until then this scans, as ``eleanor-cloud tasks`` always did.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from eleanor_cloud.models import StageStatus
from eleanor_cloud.store.state_store import StateStore

__all__ = ["IndexPage", "Verify", "find_tasks"]

# The caller's way to read a task's true overall status (``None``: no such task). The
# CLI and the dashboard pass one that keeps the view it loaded, so a row is read once.
Verify = Callable[[str], StageStatus | None]


@dataclass(frozen=True, slots=True)
class IndexPage:
    """Task ids that match, in lexicographic order, and where the next page starts."""

    task_ids: list[str]
    next_after: str | None
    repaired: int = 0


def find_tasks(
    store: StateStore,
    *,
    verify: Verify,
    status: StageStatus | None = None,
    prefix: str = "",
    since: datetime | None = None,
    after: str | None = None,
    limit: int = 50,
) -> IndexPage:
    """Up to ``limit`` task ids after ``after`` whose id starts with ``prefix``, whose
    verified status is ``status`` (any when ``None``) and whose status last changed at
    or after ``since`` (timezone-aware)."""
    found: list[str] = []
    for task_id in store.list_tasks():
        if (after is not None and task_id <= after) or not task_id.startswith(prefix):
            continue
        actual = verify(task_id)
        if actual is None or (status is not None and actual is not status):
            continue
        if len(found) == limit:
            return IndexPage(found, found[-1])
        found.append(task_id)
    return IndexPage(found, None)
