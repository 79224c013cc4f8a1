"""The rows of ``eleanor-cloud tasks``: through the task index, or by a full scan.

Either way each listed task is loaded once (its manifest, one LIST, its stage objects)
and that load is both the row and the check of the index's word; see
:mod:`eleanor_cloud.engine.task_index` for what a query costs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from eleanor_cloud.models import StageStatus

if TYPE_CHECKING:
    from eleanor_cloud.cli.shapes import TaskRow
    from eleanor_cloud.store.state_store import StateStore

__all__ = ["RowVerify", "TaskRows", "parse_since", "task_rows"]

_AGO = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``12h``, ``30m``, ``2d``, ``1w`` ago, or an ISO-8601 time (UTC if no zone);
    ``ValueError`` with the accepted forms otherwise."""
    found = _AGO.fullmatch(text.strip())
    if found:
        ago = timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})
        return (now or datetime.now(UTC)) - ago
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration (30m, 12h, 2d, 1w) nor an ISO-8601 time "
            "(2026-12-01T18:00:00Z)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass
class RowVerify:
    """A ``verify`` for the index that keeps the row it loaded (each task id is written
    by one call, so the pool's threads never share an entry). A task that cannot be
    decoded is a CORRUPT row and counts as ERROR, as the index's own repair counts it:
    "what failed?" finds it."""

    store: StateStore
    rows: dict[str, TaskRow] = field(default_factory=dict)

    def __call__(self, task_id: str) -> StageStatus | None:
        from eleanor_cloud.cli.shapes import corrupt_row, task_row
        from eleanor_cloud.cli.views import load_task_view
        from eleanor_cloud.errors import CorruptState, NotFound

        try:
            view = load_task_view(self.store, task_id, with_lease=False, with_progress=False)
        except NotFound:
            return None  # a folder without a manifest (foreign, or deleted meanwhile)
        except CorruptState as exc:
            self.rows[task_id] = corrupt_row(task_id, str(exc))
            return StageStatus.ERROR
        self.rows[task_id] = task_row(view)
        return view.status


@dataclass(frozen=True)
class TaskRows:
    """A page of rows, where the next starts, and how many index entries were stale."""

    rows: list[TaskRow]
    next_after: str | None
    stale: int = 0


def task_rows(
    store: StateStore,
    *,
    status: StageStatus | None,
    after: str | None,
    limit: int,
    prefix: str = "",
    since: datetime | None = None,
    scan: bool = False,
) -> TaskRows:
    """A page of rows. ``scan`` filters by reading every task folder instead of the
    index (for stores written before it, or to compare; not with ``since``)."""
    from eleanor_cloud.engine.task_index import find_tasks

    verify = RowVerify(store)
    if scan and status is not None:
        return _scan(store, verify, status, prefix, after, limit)
    page = find_tasks(
        store, verify=verify, status=status, prefix=prefix, since=since, after=after, limit=limit
    )
    return TaskRows([verify.rows[t] for t in page.task_ids], page.next_after, page.stale)


def _scan(
    store: StateStore,
    verify: RowVerify,
    status: StageStatus,
    prefix: str,
    after: str | None,
    limit: int,
) -> TaskRows:
    """The way before the index: every task read, kept if its status is ``status``;
    chunks are read concurrently, so a page costs a round trip per chunk."""
    from concurrent.futures import ThreadPoolExecutor
    from itertools import islice

    ids = (t for t in store.list_tasks(prefix) if after is None or t > after)
    rows: list[TaskRow] = []
    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="eleanor-cli") as pool:
        while True:
            chunk = list(islice(ids, 32))
            if not chunk:
                return TaskRows(rows, None)
            for task_id, found in zip(chunk, pool.map(verify, chunk), strict=True):
                if found is not status:
                    continue
                if len(rows) == limit:
                    return TaskRows(rows, rows[-1].task_id)
                rows.append(verify.rows[task_id])
