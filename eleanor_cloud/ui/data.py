"""What the dashboard reads from the store: a page of task rows, and one task. Reads only.

Rows come from :func:`eleanor_cloud.engine.task_index.find_tasks`, whose ``verify``
callback loads each candidate's view (manifest, one LIST, its stage objects) once and
keeps it, so the row shown is the one that was verified and no task is read twice.
A task that cannot be decoded is a CORRUPT row (as ``eleanor-cloud tasks`` shows it);
it counts as ERROR for the status filter, so "what failed?" finds it too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from eleanor_cloud.errors import CorruptState, InvalidKey, NotFound
from eleanor_cloud.keys import is_valid_task_id
from eleanor_cloud.models import StageStatus

if TYPE_CHECKING:
    from eleanor_cloud.cli.views import TaskView
    from eleanor_cloud.store.state_store import StateStore

__all__ = [
    "CORRUPT",
    "STATUS_FILTERS",
    "Row",
    "TablePage",
    "load_task",
    "store_label",
    "task_table",
]

CORRUPT = "CORRUPT"
# The filters the table offers, in lifecycle order (RETRY and UNBOUND are never a
# task's overall status: see eleanor_cloud.engine.summary.overall_status).
STATUS_FILTERS = ("CREATED", "RUNNING", "COMPLETE", "ERROR", "CANCELED")
_ID_CHARS = re.compile(r"[A-Za-z0-9._-]*")
# Defensive: a description never carries secrets, but a third-party backend's might
# spell a URL with user:password@ or a signed query string.
_USERINFO = re.compile(r"(?<=://)[^/@\s]*@")
_QUERY = re.compile(r"\?\S*")


@dataclass(frozen=True)
class Row:
    """One line of the task table."""

    task_id: str
    status: str  # a StageStatus value, or CORRUPT
    current_stage: str | None
    stages_done: int
    stages_total: int
    attempts: int
    updated_at: str | None
    message: str  # the current stage's last message, or why the task cannot be read


@dataclass(frozen=True)
class TablePage:
    """The rows of one page, where the next one starts, and a note for the reader."""

    rows: list[Row]
    next_after: str | None
    notice: str | None = None


def store_label(store: StateStore) -> str:
    """The store as the CLI names it (its description, never a credential) + prefix."""
    text = _QUERY.sub("", _USERINFO.sub("", store.backend.description))
    return f"{text} (prefix {store.prefix}/)" if store.prefix else text


def _row(view: TaskView) -> Row:
    current = view.current
    return Row(
        task_id=view.task_id,
        status=view.status.value,
        current_stage=current.name if current is not None else None,
        stages_done=sum(s.status is StageStatus.COMPLETE for s in view.stages),
        stages_total=len(view.stages),
        attempts=view.attempts,
        updated_at=view.updated_at,
        message=current.last_message if current is not None else "",
    )


class _Rows:
    """The ``verify`` callback: loads a task's view once, keeps the row it makes."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.rows: dict[str, Row] = {}

    def __call__(self, task_id: str) -> StageStatus | None:
        from eleanor_cloud.cli.views import load_task_view

        try:
            view = load_task_view(self.store, task_id, with_lease=False, with_progress=False)
        except NotFound:
            return None
        except CorruptState as exc:
            self.rows[task_id] = Row(task_id, CORRUPT, None, 0, 0, 0, None, str(exc))
            return StageStatus.ERROR
        row = self.rows[task_id] = _row(view)
        return StageStatus(row.status)


def task_table(
    store: StateStore,
    *,
    status: str | None = None,
    prefix: str = "",
    after: str | None = None,
    limit: int = 50,
) -> TablePage:
    """One page of the table: tasks after ``after`` whose id starts with ``prefix`` and
    whose status is ``status`` (any when ``None``). Input that no task id could match
    is answered without a request, with a notice saying why."""
    from eleanor_cloud.engine.task_index import find_tasks

    if status is not None and status not in STATUS_FILTERS:
        return TablePage([], None, f"unknown status {status!r}: use one of the filters")
    if not _ID_CHARS.fullmatch(prefix):
        return TablePage(
            [], None, "task ids contain only letters, digits, '.', '_' and '-': no task matches"
        )
    if after is not None and not is_valid_task_id(after):
        return TablePage([], None, "the page link is not a valid task id: start again")
    verify = _Rows(store)
    found = find_tasks(
        store,
        verify=verify,
        status=StageStatus(status) if status else None,
        prefix=prefix,
        after=after,
        limit=limit,
    )
    rows = [verify.rows[t] for t in found.task_ids if t in verify.rows]
    return TablePage(rows, found.next_after)


def load_task(store: StateStore, task_id: str) -> TaskView:
    """Everything the task page shows: stages, lease, records progress and fan-out
    counts (``NotFound`` if there is no such task, ``InvalidKey`` for a bad id)."""
    from eleanor_cloud.cli.views import load_task_view

    if not is_valid_task_id(task_id):
        raise InvalidKey(task_id, "is not a valid task id", field="task_id")
    return load_task_view(store, task_id, with_lease=True, with_progress=True)
