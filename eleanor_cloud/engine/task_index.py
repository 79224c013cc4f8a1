"""Find tasks by status, id prefix or status-change time without reading every task.

The index is one marker per task in its status's partition (see
:mod:`eleanor_cloud.store.index_markers`; the engine moves it, :mod:`.indexing`). A
query lists only the partition asked for and reads only the tasks listed there, so its
cost follows the tasks that match, not the store's size:

- ``status=S``: the LIST pages of partition S, then ``verify`` per listed task;
- ``since=T``: + one small GET per listed marker (its ``changed_at``); with no status,
  every partition is listed: combine ``since`` with ``status`` to keep it small;
- no status and no ``since``: the task folders themselves (LIST), as before the index.

Every listed task is verified against its states (the caller's ``verify``), so a stale
marker (a crash between a state write and the marker's move) is never reported as a
match, only counted. Reads never write: ``repair=True`` (``eleanor-cloud index
repair``) or :func:`rebuild_index` fix the index, and only remove a marker older than
``grace``: a younger one may be a holder's write-ahead mark whose state write is in
flight.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice

from eleanor_cloud.clock import Clock, utc_now
from eleanor_cloud.engine.indexing import task_status_of
from eleanor_cloud.errors import CorruptState, NotFound
from eleanor_cloud.models import StageStatus
from eleanor_cloud.store import index_markers as im
from eleanor_cloud.store.state_store import StateStore

__all__ = [
    "GRACE",
    "IndexPage",
    "RebuildReport",
    "Verify",
    "find_tasks",
    "rebuild_index",
    "states_verify",
]

# The caller's way to read a task's true overall status (``None``: no such task). The
# CLI and the dashboard pass one that keeps the view it loaded, so a row is read once.
# Called from several threads at once.
Verify = Callable[[str], StageStatus | None]
# How old a wrong marker must be before a repair removes it: far longer than the gap
# between a holder's write-ahead mark and its state write (one bounded request).
GRACE = timedelta(minutes=5)
_WORKERS = 8  # tasks verified at once: a page costs about one round trip per chunk


@dataclass(frozen=True, slots=True)
class IndexPage:
    """Task ids that match, in lexicographic order, and where the next page starts.

    ``stale``: listed markers whose task turned out to have another status (or none);
    ``repaired``: index objects written or removed to fix them (``repair=True`` only).
    """

    task_ids: list[str]
    next_after: str | None
    stale: int = 0
    repaired: int = 0


@dataclass(frozen=True, slots=True)
class RebuildReport:
    """What :func:`rebuild_index` found and did."""

    tasks: int
    marked: int  # markers written (a task missing from its partition)
    removed: int  # wrong markers removed
    kept_young: int  # wrong markers left because they are younger than the grace


def states_verify(store: StateStore) -> Verify:
    """A ``verify`` reading the manifest and stage states (a CORRUPT task reads ERROR)."""
    from eleanor_cloud.engine.anystate import AnyStageState

    def verify(task_id: str) -> StageStatus | None:
        try:
            names = store.load_manifest(task_id).stages
            records = store.load_task_records(task_id, AnyStageState)
        except NotFound:
            return None
        except CorruptState:
            return StageStatus.ERROR
        return task_status_of(names, {n: r.value.status for n, r in records.items()})

    return verify


def _candidates(
    store: StateStore, status: StageStatus | None, prefix: str, since: datetime | None
) -> Iterator[tuple[str, StageStatus | None]]:
    """(task id, the partition it was listed in) in id order; ``None``: a folder."""
    if status is not None:
        return ((t, status) for t in im.list_marked(store, status, prefix))
    if since is None:
        return ((t, None) for t in store.list_tasks(prefix))

    def tagged(status: StageStatus) -> Iterator[tuple[str, str]]:
        return ((t, status.value) for t in im.list_marked(store, status, prefix))

    merged = heapq.merge(*(tagged(s) for s in im.INDEXED))
    return ((t, StageStatus(s)) for t, s in merged)


class _Judge:
    """Reads markers and verifies candidates; counts (and optionally fixes) stale ones."""

    def __init__(
        self, store: StateStore, verify: Verify, repair: bool, now: datetime, grace: timedelta
    ) -> None:
        self.store, self.verify, self.repair = store, verify, repair
        self.now, self.grace = now, grace
        self.stale = self.repaired = 0

    def changed_at(self, task_id: str, status: StageStatus) -> datetime | None:
        marker = im.read_marker(self.store, status, task_id)
        return marker.changed_at if marker is not None else None

    def matches(self, task_id: str, listed: StageStatus | None) -> bool:
        actual = self.verify(task_id)
        if listed is None:
            return actual is not None
        if actual is listed:
            return True
        self.stale += 1
        if self.repair:
            self.fix(task_id, listed, actual)
        return False

    def fix(self, task_id: str, wrong: StageStatus, actual: StageStatus | None) -> None:
        if actual is not None and im.put_marker(self.store, actual, task_id, self.now):
            self.repaired += 1
        changed = self.changed_at(task_id, wrong)
        if changed is not None and self.now - changed >= self.grace:
            im.delete_marker(self.store, wrong, task_id)
            self.repaired += 1


def find_tasks(
    store: StateStore,
    *,
    verify: Verify,
    status: StageStatus | None = None,
    prefix: str = "",
    since: datetime | None = None,
    after: str | None = None,
    limit: int = 50,
    repair: bool = False,
    grace: timedelta = GRACE,
    clock: Clock = utc_now,
) -> IndexPage:
    """Up to ``limit`` task ids after ``after`` whose id starts with ``prefix``, whose
    verified status is ``status`` (any when ``None``) and, with ``since``
    (timezone-aware), whose status last changed at or after it. See the module
    docstring for what each costs."""
    if since is not None and since.tzinfo is None:
        raise ValueError("since must be timezone-aware (e.g. datetime.now(UTC))")
    judge = _Judge(store, verify, repair, clock(), grace)
    listed = (c for c in _candidates(store, status, prefix, since) if after is None or c[0] > after)
    found: list[str] = []
    more = False
    with ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="eleanor-index") as pool:
        while not more:
            # Without a filter that can drop tasks, exactly the rows still needed.
            exact = status is None and since is None
            chunk = list(islice(listed, max(limit - len(found), 1) if exact else 32))
            if not chunk:
                break
            if since is not None:
                times = pool.map(lambda c: judge.changed_at(c[0], c[1]), chunk)
                chunk = [c for c, t in zip(chunk, times, strict=True) if t and t >= since]
            seen = found[-1] if found else after
            chunk = [c for c in chunk if seen is None or c[0] > seen]  # one id, two partitions
            for (task_id, _), ok in zip(
                chunk, pool.map(lambda c: judge.matches(*c), chunk), strict=True
            ):
                if not ok or (found and found[-1] == task_id):
                    continue
                if len(found) == limit:
                    more = True
                    break
                found.append(task_id)
        if not more and len(found) == limit:
            more = next(listed, None) is not None
    return IndexPage(found, found[-1] if more and found else None, judge.stale, judge.repaired)


def rebuild_index(
    store: StateStore,
    *,
    verify: Verify | None = None,
    grace: timedelta = GRACE,
    clock: Clock = utc_now,
) -> RebuildReport:
    """Make the index agree with the states: every task marked in its status's
    partition, every other marker removed (unless younger than ``grace``). Reads every
    task (one LIST of the folders, ``verify`` per task) and LISTs each partition once;
    writes only what is wrong. Safe while tasks run."""
    verify = verify or states_verify(store)
    now = clock()
    marked: dict[str, set[StageStatus]] = {}
    for status in im.INDEXED:
        for task_id in im.list_marked(store, status):
            marked.setdefault(task_id, set()).add(status)
    tasks = written = removed = young = 0
    truth: dict[str, StageStatus | None] = {}
    with ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="eleanor-index") as pool:
        ids = list(store.list_tasks())
        for task_id, actual in zip(ids, pool.map(verify, ids), strict=True):
            truth[task_id] = actual
    for task_id in sorted(set(truth) | set(marked)):
        actual = truth.get(task_id)
        tasks += actual is not None
        have = marked.get(task_id, set())
        if actual is not None and actual not in have:
            written += im.put_marker(store, actual, task_id, now)
        for wrong in sorted(have - {actual}, key=lambda s: s.value):
            marker = im.read_marker(store, wrong, task_id)
            if marker is not None and now - marker.changed_at < grace:
                young += 1
                continue
            im.delete_marker(store, wrong, task_id)
            removed += 1
    return RebuildReport(tasks, written, removed, young)
