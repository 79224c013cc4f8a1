"""A run's data and the one path by which it writes a stage state.

:class:`RunState` holds, per stage, the state the run works with *and the record it
replaces on its next write*: versions travel with the run's data, never through a
cache. :class:`Checkpointer` writes through the store at the lease's epoch, and
explains a refused write with one read: a newer epoch means a successor fenced this
holder out (``LeaseLost``); CANCELED means the task was canceled.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from eleanor_cloud.engine.events import Reporter
from eleanor_cloud.engine.indexing import IndexWriter, status_after
from eleanor_cloud.engine.lease import LeaseManager
from eleanor_cloud.engine.options import TaskSpec
from eleanor_cloud.errors import Conflict, EleanorError, LeaseLost, NotFound
from eleanor_cloud.models import StageStatus
from eleanor_cloud.store.records import Record
from eleanor_cloud.store.state_store import StateStore

__all__ = ["Canceled", "Checkpointer", "RunState"]


class Canceled(Exception):
    """Internal: a write found the stage CANCELED."""

    def __init__(self, stage_name: str) -> None:
        super().__init__(stage_name)
        self.stage_name = stage_name


@dataclass
class RunState:
    """What one call to run()/rollback() carries around.

    ``records[name]`` is the record the next write of that stage replaces (``None``:
    no object yet, the write creates it).
    """

    lease: LeaseManager
    states: dict[str, Any]
    records: dict[str, Record[Any] | None]
    began: dict[str, str]
    end: datetime | None = None
    cancel_seen: bool = False
    last_probe: datetime | None = field(default=None)
    probe: threading.Thread | None = field(default=None)  # the cancel check in flight
    # A records stage's progress record, where the run has read it (RUNNING stages at
    # open, then whatever its records run last wrote): the base of its next write.
    progress: dict[str, Record[Any] | None] = field(default_factory=dict)
    floor: int = 0  # the lease's deletion floor: objects at or below it are leftovers

    @property
    def epoch(self) -> int:
        return self.lease.epoch

    def others(self, name: str) -> list[Any]:
        """The states of every stage but ``name`` (a GLOBAL budget counts them)."""
        return [s for n, s in self.states.items() if n != name]

    def settle(self, record: Record[Any]) -> None:
        """Take a written record as the stage's state and the base of its next write."""
        name = record.value.stage_name
        self.states[name] = record.value
        self.records[name] = record


class Checkpointer:
    """Writes a run's stage states; reads what a refusal or a cancel check needs."""

    def __init__(self, spec: TaskSpec, store: StateStore, reporter: Reporter) -> None:
        self.spec = spec
        self.store = store
        self.reporter = reporter
        self.index = IndexWriter(store, spec.task_id, spec.clock)

    def save(self, run: RunState, state: Any, replaces: Record[Any] | None) -> Record[Any]:
        """The raw write at the run's epoch, with the task index moved around it when
        the write changes the task's status (see :mod:`.indexing`)."""
        before, after = status_after(self.spec.stage_names, run.states, state.stage_name, state)
        return self.index.around(
            before, after, lambda: self.store.save(state, replaces=replaces, epoch=run.epoch)
        )

    def write(self, run: RunState, state: Any, replaces: Record[Any] | None = None) -> Record[Any]:
        """Compare-and-swap one stage state at the lease's epoch; explain a refusal.

        Replaces ``run.records[name]`` unless ``replaces`` names another record (the
        interrupt handshake replaces the attempt's RUNNING record, whatever the run
        has since).
        """
        run.lease.check()
        name = state.stage_name
        base = replaces if replaces is not None else run.records.get(name)
        try:
            record = self.save(run, state, base)
        except Conflict as exc:
            current = exc.current if isinstance(exc.current, Record) else None
            raise self.explain(run, name, current) from exc
        return record

    def commit(self, run: RunState, state: Any) -> Record[Any]:
        """Write and settle: the usual step of the run's own thread."""
        record = self.write(run, state)
        run.settle(record)
        return record

    def explain(self, run: RunState, name: str, current: Record[Any] | None) -> Exception:
        task_id = self.spec.task_id
        if current is None:
            try:
                current = self.store.load_record(task_id, name, self.spec.state_class)
            except NotFound:
                return LeaseLost(
                    f"task {task_id!r} stage {name!r}: the stage object "
                    "disappeared while this holder was writing it"
                )
        if current.epoch > run.epoch:
            return LeaseLost(
                f"task {task_id!r} stage {name!r}: fenced out by {current.writer!r} at "
                f"epoch {current.epoch} (ours {run.epoch}); this holder stops writing",
                key=current.key,
            )
        if current.value.status is StageStatus.CANCELED:
            return Canceled(name)
        return LeaseLost(
            f"task {task_id!r} stage {name!r} was changed by {current.writer!r} "
            f"(epoch {current.epoch}) while this holder ran it; stopping to be safe",
            key=current.key,
        )

    def is_cancelled(self, run: RunState, name: str) -> bool:
        """Canceled or fenced out? A read at most every ``cancel_check_interval``.

        Never waits longer than ``PROBE_WAIT`` for the read: the lease's local deadline
        answers at once, and a read that hangs (a stalled connection) goes on in the
        background while the stage keeps asking; its answer counts when it comes.
        """
        if run.lease.lost or run.cancel_seen:
            return True
        now = self.spec.clock()
        in_flight = run.probe is not None and run.probe.is_alive()
        recent = (
            run.last_probe is not None
            and (now - run.last_probe).total_seconds() < self.spec.cancel_check_interval
        )
        if in_flight or recent:
            return run.lease.lost or run.cancel_seen
        run.last_probe = now
        run.probe = threading.Thread(
            target=self._probe, args=(run, name), daemon=True, name="eleanor-cancel-check"
        )
        run.probe.start()
        run.probe.join(self.PROBE_WAIT)
        return run.lease.lost or run.cancel_seen

    PROBE_WAIT = 1.0  # seconds ctx.cancelled may wait for the store's answer

    def _probe(self, run: RunState, name: str) -> None:
        try:
            record = self.store.load_record(self.spec.task_id, name, self.spec.state_class)
        except EleanorError as exc:  # transient: ask again after the interval
            self.reporter.log(name).debug("cancel check of stage %s failed: %s", name, exc)
            return
        if record.value.status is StageStatus.CANCELED or record.epoch > run.epoch:
            run.cancel_seen = True
