"""One attempt of one stage, and the handshake with ``interrupt()`` from another thread.

An attempt: persist RUNNING with ``attempts + 1`` (:func:`.transitions.start`), call the
stage on a private copy, persist COMPLETE / RETRY / ERROR with one history entry.

``interrupt()`` (a container's stop handler, on another thread) records the attempt in
flight as interrupted by a compare-and-swap against the attempt's RUNNING record, the
same record the stage's own outcome write replaces: exactly one of the two lands. The
engine's thread then writes nothing more for that attempt.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from eleanor_cloud.clock import format_ts, parse_ts
from eleanor_cloud.engine import transitions as tr
from eleanor_cloud.engine.checkpoint import Canceled, Checkpointer, RunState
from eleanor_cloud.engine.events import EventKind
from eleanor_cloud.engine.records import Suspended
from eleanor_cloud.engine.records_attempt import Lent, close_after_failure, finish
from eleanor_cloud.engine.stage import BaseStage, StageContext
from eleanor_cloud.errors import Conflict, EleanorError, LeaseLost
from eleanor_cloud.models import StageStateHistoryEntry, StageStatus
from eleanor_cloud.store.records import Record

__all__ = ["Attempt", "AttemptControl", "Interrupted", "Paused", "run_attempt"]


class Interrupted(Exception):
    """Internal: ``interrupt()`` recorded the attempt; the engine's thread stops."""

    def __init__(self, stage_name: str, message: str) -> None:
        super().__init__(message)
        self.stage_name = stage_name
        self.message = message


@dataclass
class Attempt:
    """The attempt in flight, shared by the engine's thread and ``interrupt()``.

    Fields change under the control lock. ``running`` is the RUNNING record once
    written: both outcome writes (the stage's and the interruption's) replace it.
    """

    run: RunState
    name: str
    number: int
    before_status: StageStatus
    begin: datetime
    running: Record[Any] | None = None
    closed: bool = False  # the engine's thread is done with the attempt
    claimed: bool = False  # interrupt() is writing the interrupted record
    recorded: Any = None  # the interrupted state, once interrupt() wrote it
    message: str = ""
    settled: threading.Event = field(default_factory=threading.Event)


class AttemptControl:
    """Stop and interrupt requests from other threads, and the attempt they act on.

    A condition over a reentrant lock: ``interrupt()`` waits on it for the RUNNING
    write of an attempt that is just starting, and ``request_stop()`` from a signal
    handler on the engine's own thread cannot deadlock on it.
    """

    def __init__(self) -> None:
        self.lock = threading.Condition(threading.RLock())
        self.stop_reason: str | None = None
        self.stop_event = threading.Event()
        self.current: Attempt | None = None
        self.shard_lease: Any = None  # a shard run in flight holds this lease (run_shard)

    def request_stop(self, reason: str) -> None:
        with self.lock:
            if self.stop_reason is None:
                self.stop_reason = reason
            self.stop_event.set()

    def begin(self, attempt: Attempt) -> bool:
        """Register the attempt unless a stop was requested (one step under the lock)."""
        with self.lock:
            if self.stop_reason is not None:
                return False
            self.current = attempt
            return True

    def started(self, attempt: Attempt, running: Record[Any]) -> None:
        with self.lock:
            attempt.running = running
            self.lock.notify_all()

    def close(self, attempt: Attempt) -> None:
        with self.lock:
            attempt.closed = True
            if self.current is attempt:
                self.current = None
            self.lock.notify_all()

    def claim(self, reason: str) -> Attempt | None:
        """For ``interrupt()``: request a stop, then the attempt it may record, if any."""
        with self.lock:
            self.request_stop(reason)
            current = self.current
            if current is None:
                return None
            self.lock.wait_for(lambda: current.closed or current.running is not None)
            if current.closed or current.claimed:
                return None
            current.claimed = True
            return current

    def lost_to_interrupt(self, attempt: Attempt) -> bool:
        """Whether interrupt() recorded this attempt (waiting for it if it is writing)."""
        with self.lock:
            claimed = attempt.claimed
        if claimed:
            attempt.settled.wait()
        return attempt.recorded is not None


class Paused(Exception):
    """Internal: a records stage stopped cleanly at a checkpoint; it stays RUNNING and
    the next run resumes the same attempt from there."""

    def __init__(self, stage_name: str, message: str, batches: int) -> None:
        super().__init__(message)
        self.stage_name, self.message, self.batches = stage_name, message, batches


def run_attempt(
    cp: Checkpointer,
    control: AttemptControl,
    run: RunState,
    stage: BaseStage[Any],
    name: str,
    *,
    resume: bool = False,
) -> StageStatus | None:
    """One attempt; ``None`` if a stop was requested before it could start.

    ``resume``: the stage is RUNNING, suspended cleanly at a checkpoint by an earlier
    run: go on with that same attempt (same number, no new RUNNING write).
    """
    spec = cp.spec
    before = run.states[name]
    if resume:
        began = run.began.get(name)
        begin = parse_ts(began) if began else spec.clock()
        current = Attempt(run, name, before.attempts, tr.status_before(before), begin)
    else:
        current = Attempt(run, name, before.attempts + 1, before.status, spec.clock())
    if not control.begin(current):
        return None
    try:
        running = run.records[name] if resume else None
        if running is None:
            running = cp.commit(run, tr.start(before))
        # The RUNNING write may have been answered after this holder's local deadline
        # (a stalled connection): then a successor may hold the task, and the stage's
        # body must not start here.
        run.lease.check()
        control.started(current, running)
        return _execute(cp, control, run, stage, current, resume)
    finally:
        control.close(current)


def _execute(
    cp: Checkpointer,
    control: AttemptControl,
    run: RunState,
    stage: BaseStage[Any],
    current: Attempt,
    resume: bool,
) -> StageStatus:
    spec, reporter = cp.spec, cp.reporter
    name, number = current.name, current.number
    assert current.running is not None
    running = current.running.value
    log = reporter.log(name)
    how = "resumed from its checkpoint" if resume else "started"
    log.info("task %s stage %s: attempt %d %s", spec.task_id, name, number, how)
    reporter.emit("stage_resumed" if resume else "stage_started", name, number, StageStatus.RUNNING)
    work = running.model_copy(deep=True)

    def cancelled() -> bool:
        return current.recorded is not None or cp.is_cancelled(run, name)

    lent = Lent(cp, control, run, current, stage.expected_duration or 0.0, cancelled)
    ctx = StageContext(
        task_id=spec.task_id,
        stage_name=name,
        attempt=number,
        logger=reporter.log(name, number),
        stage_order=spec.stage_names,
        states=run.states,
        remaining_time=lambda: remaining(spec.clock, run),
        cancelled=cancelled,
        records=lent,
    )
    outcome: StageStateHistoryEntry
    try:
        try:
            returned = stage.run(work, ctx)
        except Suspended as stop:
            if control.lost_to_interrupt(current):
                raise Interrupted(name, current.message) from None
            raise Paused(name, stop.message, stop.batches) from None
        except Exception:
            close_after_failure(lent)
            raise
        returned = finish(lent, returned, spec.result_adapter)
        result = tr.check_result(spec.result_adapter, spec.state_class, name, returned, work)
        outcome = tr.entry(
            number,
            current.before_status,
            current.begin,
            StageStatus.COMPLETE,
            spec.clock(),
            "completed",
        )
        finished = tr.complete(spec.state_class, work, running, result, outcome)
    except (Paused, Interrupted, LeaseLost):
        raise  # how the attempt ended is decided already (or not ours): nothing to write
    except Exception as exc:  # noqa: BLE001 - any failure of user code is an attempt's
        outcome = tr.entry(
            number,
            current.before_status,
            current.begin,
            StageStatus.RETRY,
            spec.clock(),
            f"{type(exc).__name__}: {exc}",
        )
        finished = tr.fail(running, outcome, spec.retry_policy, spec.max_attempts, run.others(name))
        outcome = finished.history[-1]
    # interrupt() already recorded this attempt: its outcome must not be written.
    if control.lost_to_interrupt(current):
        raise Interrupted(name, current.message)
    try:
        cp.commit(run, finished)
    except Exception as exc:
        # interrupt() won the compare-and-swap race on the RUNNING record.
        if control.lost_to_interrupt(current):
            raise Interrupted(name, current.message) from None
        if isinstance(exc, Canceled):
            record_canceled(cp, run, name, outcome)
        raise
    status: StageStatus = finished.status
    if status is StageStatus.COMPLETE:
        log.info(
            "task %s stage %s: attempt %d completed in %.3fs",
            spec.task_id,
            name,
            number,
            outcome.run_time_seconds,
        )
        reporter.emit("stage_completed", name, number, StageStatus.COMPLETE)
    else:
        level = logging.WARNING if status is StageStatus.RETRY else logging.ERROR
        log.log(
            level,
            "task %s stage %s: attempt %d failed (%s): %s",
            spec.task_id,
            name,
            number,
            status.value,
            outcome.message,
        )
        kind: EventKind = "stage_retry" if status is StageStatus.RETRY else "stage_failed"
        reporter.emit(kind, name, number, status, outcome.message)
    return status


def record_canceled(
    cp: Checkpointer, run: RunState, name: str, outcome: StageStateHistoryEntry
) -> None:
    """Append the canceled attempt's entry to the CANCELED state (best effort)."""
    spec = cp.spec
    try:
        record = cp.store.load_record(spec.task_id, name, spec.state_class)
        noted = None if record.epoch > run.epoch else tr.canceled_note(record.value, outcome)
        if noted is not None:
            cp.store.save(noted, replaces=record, epoch=run.epoch)
    except EleanorError as exc:
        cp.reporter.log(name).warning(
            "task %s stage %s: could not record the canceled attempt: %s", spec.task_id, name, exc
        )
    cp.reporter.emit("stage_canceled", name, run.states[name].attempts, StageStatus.CANCELED)


def remaining(clock: Any, run: RunState) -> float | None:
    """Seconds left before the run's end, or ``None`` without one."""
    if run.end is None:
        return None
    return float((run.end - clock()).total_seconds())


def interrupt(cp: Checkpointer, control: AttemptControl, reason: str) -> bool:
    """Record the attempt now running as interrupted (see ``TaskEngine.interrupt``)."""
    current = control.claim(reason)
    if current is None:
        # A shard run records no attempt here: release its lease, so the next worker
        # takes the shard over at once (and records the cut attempt); this worker's
        # next write is refused (a released lease refuses every write).
        lease = control.shard_lease
        if lease is not None and not lease.lost:
            lease.release()
            return True
        return False
    try:
        if not _write_interrupted(cp, control, current, reason):
            return False
        cp.reporter.log(current.name).warning(
            "task %s stage %s: %s", cp.spec.task_id, current.name, current.message
        )
        cp.reporter.emit(
            "stage_interrupted",
            current.name,
            current.number,
            current.recorded.status,
            current.message,
        )
    finally:
        # The engine's thread may be waiting for this outcome before its own write.
        current.settled.set()
    current.run.lease.release()
    return True


def _write_interrupted(
    cp: Checkpointer, control: AttemptControl, current: Attempt, reason: str
) -> bool:
    spec, run, running = cp.spec, current.run, current.running
    if run.lease.lost or running is None:
        return False  # a successor holds the task; it records the lost attempt
    lost = tr.entry(
        current.number,
        current.before_status,
        current.begin,
        StageStatus.RETRY,
        spec.clock(),
        f"interrupted: {reason}",
    )
    state = tr.fail(
        running.value, lost, spec.retry_policy, spec.max_attempts, run.others(current.name)
    )
    try:
        # Replaces exactly the RUNNING record the stage's outcome would.
        record = cp.save(run, state, running)
    except Conflict:
        cp.reporter.log(current.name).info(
            "task %s stage %s: not interrupted: its outcome was written first",
            spec.task_id,
            current.name,
        )
        return False
    with control.lock:
        run.settle(record)
        current.recorded, current.message = state, state.history[-1].message
    return True


def interrupted_now(cp: Checkpointer, run: RunState, name: str) -> StageStatus:
    """A stage found RUNNING under our lease: its attempt was lost; record it."""
    spec = cp.spec
    state = run.states[name]
    detail = (
        f"attempt {state.attempts} was found RUNNING by {spec.holder!r} (epoch "
        f"{run.epoch}); its holder stopped without recording an outcome"
    )
    new = tr.interrupted(
        state,
        began=run.began.get(name),
        now=format_ts(spec.clock()),
        detail=detail,
        policy=spec.retry_policy,
        max_attempts=spec.max_attempts,
        others=run.others(name),
    )
    cp.commit(run, new)
    message = new.history[-1].message
    cp.reporter.log(name).warning("task %s stage %s: %s", spec.task_id, name, message)
    cp.reporter.emit("stage_interrupted", name, state.attempts, new.status, message)
    status: StageStatus = new.status
    return status
