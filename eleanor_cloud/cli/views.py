"""Read a task from a store without the user's state class, for display.

The CLI cannot import every user's state class, so stage states are loaded with the
engine's permissive :class:`~eleanor_cloud.engine.AnyStageState`: the seed fields are
validated, extra fields and any result are kept as plain JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from eleanor_cloud.clock import parse_ts, utc_now
from eleanor_cloud.engine.anystate import AnyStageState
from eleanor_cloud.models import StageStateHistoryEntry, StageStatus
from eleanor_cloud.store.records import BROKEN_EXPIRY, Lease, Record, TaskManifest
from eleanor_cloud.store.state_store import StateStore

if TYPE_CHECKING:
    from eleanor_cloud.cli.records_view import ProgressView
    from eleanor_cloud.cli.shard_view import FanoutView

__all__ = [
    "BROKEN_EXPIRY",
    "LeaseView",
    "StageView",
    "TaskView",
    "load_task_view",
    "overall_status",
]


def overall_status(statuses: list[StageStatus]) -> StageStatus:
    """A task's status from its stages' (in manifest order), exactly as the engine says.

    CANCELED or ERROR anywhere wins; all COMPLETE is COMPLETE; nothing started is
    CREATED; anything else (a stage running, waiting to retry, or some done and the
    rest waiting, e.g. after a time budget) is RUNNING.
    """
    from eleanor_cloud.engine.summary import overall_status as engine_overall

    return engine_overall(statuses)


@dataclass(frozen=True)
class StageView:
    """One stage as displayed: its state, or CREATED if it has no object yet."""

    name: str
    status: StageStatus
    attempts: int
    history: list[StageStateHistoryEntry]
    result: Any
    updated_at: str | None
    revision: int | None
    writer: str | None
    progress: ProgressView | None = None  # a records stage's, as last checkpointed
    progress_error: str | None = None  # why its progress (or plan) cannot be read
    fanout: FanoutView | None = None  # a fanned-out stage's plan and shards

    @property
    def last_message(self) -> str:
        return self.history[-1].message if self.history else ""

    @property
    def last_run_seconds(self) -> float | None:
        return self.history[-1].run_time_seconds if self.history else None


@dataclass(frozen=True)
class LeaseView:
    """The task's lease with its expiry judged against this host's clock."""

    lease: Lease
    epoch: int
    writer: str
    expired: bool
    seconds_left: float

    @property
    def broken(self) -> bool:
        """Broken by ``eleanor-cloud lease --break``."""
        return self.lease.expires_at == BROKEN_EXPIRY

    @property
    def live(self) -> bool:
        """Held by somebody right now: neither released nor expired."""
        return not self.lease.released and not self.expired

    @classmethod
    def of(cls, record: Record[Lease], now: datetime) -> LeaseView:
        left = (parse_ts(record.value.expires_at) - now).total_seconds()
        return cls(record.value, record.value.epoch, record.writer, left <= 0, left)


@dataclass(frozen=True)
class TaskView:
    """Everything ``status`` shows about a task."""

    task_id: str
    manifest: TaskManifest
    stages: list[StageView]
    lease: LeaseView | None
    extra_stages: list[str] = field(default_factory=list)

    @property
    def status(self) -> StageStatus:
        return overall_status([s.status for s in self.stages])

    @property
    def done(self) -> bool:
        """COMPLETE, ERROR or CANCELED: a run would not advance it."""
        return self.status in (StageStatus.COMPLETE, StageStatus.ERROR, StageStatus.CANCELED)

    @property
    def next_stage(self) -> str | None:
        """The first stage not yet COMPLETE (the one a run would start or resume)."""
        if self.done:
            return None
        for stage in self.stages:
            if stage.status is not StageStatus.COMPLETE:
                return stage.name
        return None

    @property
    def current(self) -> StageView | None:
        """The stage a run would resume, or the one that failed / was canceled."""
        if self.status in (StageStatus.ERROR, StageStatus.CANCELED):
            return next((s for s in self.stages if s.status is self.status), None)
        name = self.next_stage
        return next((s for s in self.stages if s.name == name), None)

    @property
    def result(self) -> Any:
        """The last stage's result: the task's result once it is COMPLETE."""
        return self.stages[-1].result if self.stages else None

    @property
    def updated_at(self) -> str:
        stamps = [s.updated_at for s in self.stages if s.updated_at]
        return max(stamps, default=self.manifest.created_at)

    @property
    def attempts(self) -> int:
        return sum(s.attempts for s in self.stages)


def load_task_view(
    store: StateStore,
    task_id: str,
    *,
    with_lease: bool = True,
    with_progress: bool = True,
    with_shards: bool = False,
    now: datetime | None = None,
) -> TaskView:
    """Load manifest, stage states, lease and records progress (``NotFound`` if the task
    does not exist): GET manifest, one LIST, a GET per stage object, the lease and
    (``with_progress``) a GET per records stage; see :mod:`.records_view`. A stage with
    a folder but no progress of its own may be fanned out: +1 GET plan, +1 LIST done/,
    and (``with_shards``) 3 GETs per shard; see :mod:`.shard_view`."""
    from eleanor_cloud import keys

    manifest = store.load_manifest(task_id)
    prefix = keys.task_prefix(store.prefix, task_id)
    listed = list(store.backend.list(prefix, delimiter="/"))
    # A records stage's folder (progress, failed chunks) rolls up into "<stage>/".
    folders = {k[len(prefix) : -1] for k in listed if k.endswith("/")}
    stage_keys = (k for k in listed if not k.endswith("/"))
    names = [n for n in map(keys.stage_name_from_key, stage_keys) if n is not None]
    records = store.load_stage_records(task_id, names, AnyStageState)
    lease = None
    if with_lease:
        lease_record = store.load_lease(task_id)
        if lease_record is not None:
            lease = LeaseView.of(lease_record, now or utc_now())
    progress: dict[str, Any] = {}
    fanouts: dict[str, FanoutView] = {}
    if with_progress:
        from eleanor_cloud.cli.records_view import load_progress_views

        floor = lease.lease.floor if lease is not None else 0
        wanted = [n for n in manifest.stages if n in folders]
        progress = load_progress_views(store, task_id, wanted, floor)
        for name in (n for n in wanted if n not in progress):
            found = _fanout(store, task_id, name, with_shards, now or utc_now())
            if isinstance(found, str):
                progress[name] = found
            elif found is not None:
                fanouts[name] = found
    stages: list[StageView] = []
    for name in manifest.stages:
        found = progress.get(name)
        extra: dict[str, Any] = (
            {"progress_error": found} if isinstance(found, str) else {"progress": found}
        )
        extra["fanout"] = fanouts.get(name)
        record = records.get(name)
        if record is None:
            stages.append(
                StageView(name, StageStatus.CREATED, 0, [], None, None, None, None, **extra)
            )
            continue
        state = record.value
        result: Any = state.result
        if isinstance(result, BaseModel):
            result = result.model_dump(mode="json")
        stages.append(
            StageView(
                name,
                state.status,
                state.attempts,
                list(state.history),
                result,
                record.written_at,
                record.revision,
                record.writer,
                **extra,
            )
        )
    extra_stages = sorted(set(records) - set(manifest.stages))
    return TaskView(task_id, manifest, stages, lease, extra_stages)


def _fanout(
    store: StateStore, task_id: str, name: str, detailed: bool, now: datetime
) -> FanoutView | str | None:
    """A stage's fan-out, or why its plan cannot be read, or ``None`` (not sharded)."""
    from eleanor_cloud.cli.shard_view import load_fanout
    from eleanor_cloud.errors import CorruptState

    try:
        return load_fanout(store, task_id, name, detailed=detailed, now=now)
    except CorruptState as exc:
        return f"fan-out plan: {exc}"
