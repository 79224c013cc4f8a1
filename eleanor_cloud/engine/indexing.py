"""Keeping the task index in step with a task's status, around the state writes.

The order is what makes the index safe to trust after a crash:

1. PUT the marker of the status the write is about to make true (write-ahead);
2. the state write itself;
3. DELETE the marker of the status it leaves (best effort).

A crash after 1 or 2 leaves a task in two partitions, never in none: readers check
every task they list against its states and drop (after a grace) a marker that is
wrong. A write that changes no task status (most do: a stage starting, completing
while others remain, retrying) costs the index nothing; one that does costs a PUT
and a DELETE. If step 1 fails, the state write is not attempted (the error is the
caller's, as if the state write had failed); a refused state write (``Conflict``:
nothing landed) takes its marker back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from eleanor_cloud.engine.summary import overall_status
from eleanor_cloud.errors import Conflict, EleanorError
from eleanor_cloud.models import StageStatus
from eleanor_cloud.store import index_markers
from eleanor_cloud.store.state_store import StateStore

__all__ = ["IndexWriter", "status_after", "task_status_of"]

_log = logging.getLogger("eleanor_cloud.index")
R = TypeVar("R")


def task_status_of(names: Iterable[str], statuses: Mapping[str, StageStatus]) -> StageStatus:
    """A bound task's overall status; a stage without a state counts as CREATED."""
    return overall_status([statuses.get(n, StageStatus.CREATED) for n in names])


def status_after(
    names: Iterable[str], states: Mapping[str, Any], name: str, new: Any
) -> tuple[StageStatus, StageStatus]:
    """The task's status before and after stage ``name`` becomes ``new`` (pure)."""
    before = {n: s.status for n, s in states.items() if s is not None}
    after = {**before, name: new.status}
    names = list(names)
    return task_status_of(names, before), task_status_of(names, after)


class IndexWriter:
    """Moves one task's marker as its status changes (see the module docstring)."""

    def __init__(self, store: StateStore, task_id: str, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.task_id = task_id
        self.clock = clock

    def created(self) -> None:
        """A task was just bound: mark it CREATED, best effort (its manifest is its only
        object; a task left unmarked is marked by its first status change, and
        ``eleanor-cloud index rebuild`` finds it)."""
        try:
            self._put(StageStatus.CREATED)
        except EleanorError as exc:
            _log.warning(
                "task %s: could not mark it CREATED in the task index: %s",
                self.task_id,
                exc,
                extra={"task_id": self.task_id, "stage_name": None},
            )

    def around(
        self,
        before: StageStatus,
        after: StageStatus,
        write: Callable[[], R],
        *,
        single: bool = True,
    ) -> R:
        """Run ``write`` (the state write) with the marker moved around it. ``single``:
        ``write`` is one state write, so a ``Conflict`` means nothing landed and the
        new marker is taken back; several writes keep it whatever happens."""
        if before is after:
            return write()
        self._put(after)
        try:
            result = write()
        except Conflict:
            if single:
                self.drop(after)  # nothing landed: the marker would only be an extra
            raise
        self.drop(before)
        return result

    def moved(self, before: StageStatus, after: StageStatus) -> None:
        """After writes whose outcome was known only once made (store-only operations
        that write several stages): mark ``after``, then drop ``before``."""
        if before is not after:
            self._put(after)
            self.drop(before)

    def gone(self, status: StageStatus) -> None:
        """The task was deleted: drop its marker."""
        self.drop(status)

    def _put(self, status: StageStatus) -> None:
        index_markers.put_marker(self.store, status, self.task_id, self.clock())

    def drop(self, status: StageStatus) -> None:
        try:
            index_markers.delete_marker(self.store, status, self.task_id)
        except EleanorError as exc:  # a stale extra: readers repair it
            _log.warning(
                "task %s: could not remove its %s index marker: %s",
                self.task_id,
                status.value,
                exc,
                extra={"task_id": self.task_id, "stage_name": None},
            )
