"""A fanned-out stage as the CLI shows it: its plan, which shards ended, and (when asked)
each shard's status, records progress and live holder.

A sharded stage (one that defines ``plan()``; :mod:`eleanor_cloud.engine.fanout`) keeps
no ``<stage>/progress.json`` of its own: its records progress lives per shard, under
``<stage>/shards/<id>/``. What reading it costs, on top of what ``status`` reads anyway
(the task's one LIST already shows the stage's ``<stage>/`` folder, and the progress
GET that finds nothing):

* always: 1 GET ``plan.json`` and 1 LIST ``done/`` (one page per 1,000 shards), which
  give every shard's id and whether it ended (its ``done/`` marker);
* ``status --shards`` only: 3 GETs per shard (``state.json``, ``progress.json``,
  ``_lease.json``), 8 at a time, for each shard's status, attempts, records and holder.

Nothing here writes. Stored text (holders, messages) is escaped where it is printed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from eleanor_cloud import keys
from eleanor_cloud.cli.records_view import ProgressView
from eleanor_cloud.clock import parse_ts
from eleanor_cloud.engine.fanout import Plan, ShardState, list_done, load_plan, load_shard
from eleanor_cloud.engine.progress import Progress
from eleanor_cloud.errors import CorruptState
from eleanor_cloud.models import StageStatus
from eleanor_cloud.store import documents
from eleanor_cloud.store.records import Lease
from eleanor_cloud.store.state_store import StateStore

__all__ = ["FanoutView", "ShardView", "load_fanout"]

_THREADS = 8


@dataclass(frozen=True)
class ShardView:
    """One shard: its id and whether it ended; the rest only when read (``--shards``)."""

    id: str
    ended: bool
    state: ShardState | None = None
    progress: ProgressView | None = None
    lease: Lease | None = None
    lease_live: bool = False
    error: str | None = None  # why one of its objects cannot be read

    def status(self, detailed: bool) -> StageStatus | None:
        """Its status (``CREATED`` before its first write), ``None`` if not read."""
        if self.state is not None:
            return self.state.status
        return StageStatus.CREATED if detailed and self.error is None else None

    @property
    def holder(self) -> str | None:
        """Who runs it now: the holder of its lease while live, else ``None``."""
        return self.lease.holder if self.lease is not None and self.lease_live else None

    @property
    def done(self) -> int | None:
        """Records with a final outcome (``ok + fail``), from its progress or result."""
        if self.progress is not None:
            return self.progress.done
        result = self.state.result if self.state is not None else None
        return None if result is None else result.success_count + result.fail_count

    @property
    def total(self) -> int | None:
        if self.progress is not None:
            p = self.progress
            return (
                p.total
                if p.total is not None
                else (p.progress.offered if p.progress.exhausted else None)
            )
        result = self.state.result if self.state is not None else None
        return None if result is None else result.total_count

    @property
    def ok(self) -> int | None:
        if self.progress is not None:
            return self.progress.ok
        result = self.state.result if self.state is not None else None
        return None if result is None else result.success_count

    @property
    def fail(self) -> int | None:
        if self.progress is not None:
            return self.progress.fail
        result = self.state.result if self.state is not None else None
        return None if result is None else result.fail_count

    @property
    def suspended(self) -> bool:
        return self.progress is not None and self.progress.progress.suspended

    @property
    def last_message(self) -> str:
        return self.state.history[-1].message if self.state and self.state.history else ""


@dataclass(frozen=True)
class FanoutView:
    """A planned stage's shards, in plan order; ``detailed``: each one was read."""

    plan: Plan
    shards: tuple[ShardView, ...]
    detailed: bool

    @property
    def ended(self) -> int:
        return sum(s.ended for s in self.shards)

    def statuses(self) -> dict[str, int]:
        """How many shards are in each status (``detailed`` only), in status order."""
        counts = Counter(s.status(self.detailed) for s in self.shards)
        return {st.value: counts[st] for st in StageStatus if counts[st]}

    def sum_of(self, field: str) -> int | None:
        """``done``/``ok``/``fail`` summed over the shards (``None`` if not read)."""
        if not self.detailed:
            return None
        return sum(getattr(s, field) or 0 for s in self.shards)

    @property
    def total(self) -> int | None:
        """The stage's record count, once every shard's is known."""
        if not self.detailed:
            return None
        totals = [s.total for s in self.shards]
        return None if any(t is None for t in totals) else sum(t or 0 for t in totals)

    @property
    def live_holders(self) -> int | None:
        return sum(s.holder is not None for s in self.shards) if self.detailed else None


def _load_one(
    store: StateStore, task_id: str, stage: str, shard_id: str, ended: bool, now: datetime
) -> ShardView:
    """A shard's state, progress and lease: 3 GETs."""
    errors: list[str] = []
    state = progress = lease = None
    try:
        record = load_shard(store, task_id, stage, shard_id)
        state = record.value if record is not None else None
    except CorruptState as exc:
        errors.append(str(exc))
    try:
        found = documents.load_progress(store, task_id, stage, Progress, shard=shard_id)
        progress = ProgressView(found) if found is not None else None
    except CorruptState as exc:
        errors.append(str(exc))
    try:
        key = keys.shard_lease_key(store.prefix, task_id, stage, shard_id)
        held = store.load_lease(task_id, key=key)
        lease = held.value if held is not None else None
    except CorruptState as exc:
        errors.append(str(exc))
    live = lease is not None and not lease.released and parse_ts(lease.expires_at) > now
    return ShardView(shard_id, ended, state, progress, lease, live, "; ".join(errors) or None)


def load_shards(
    store: StateStore, task_id: str, stage: str, ids: Sequence[str], ended: set[str], now: datetime
) -> list[ShardView]:
    """Read the named shards (3 GETs each), ``_THREADS`` at a time, in the given order."""
    if len(ids) <= 1:
        return [_load_one(store, task_id, stage, i, i in ended, now) for i in ids]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(_THREADS, len(ids)), thread_name_prefix="eleanor-cli") as pool:
        return list(pool.map(lambda i: _load_one(store, task_id, stage, i, i in ended, now), ids))


def load_fanout(
    store: StateStore, task_id: str, stage: str, *, detailed: bool, now: datetime
) -> FanoutView | None:
    """The stage's fan-out (``None``: it has no plan), every shard read if ``detailed``.
    ``CorruptState`` if the plan cannot be decoded."""
    plan = load_plan(store, task_id, stage)
    if plan is None:
        return None
    ended = set(list_done(store, task_id, stage))
    ids = [s.id for s in plan.shards]
    if detailed:
        shards = load_shards(store, task_id, stage, ids, ended, now)
    else:
        shards = [ShardView(i, i in ended) for i in ids]
    return FanoutView(plan, tuple(shards), detailed)
