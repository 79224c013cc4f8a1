"""TaskEngine: bind, run/resume, cancel, rollback and redrive one task.

One run: bind (create the manifest, or check it) -> take the lease -> load the states
(skipped right after a fresh bind, nothing can exist yet) -> fence if the lease was
taken over -> for each stage not COMPLETE: save RUNNING with ``attempts + 1``, call the
stage, save COMPLETE / RETRY / ERROR with one history entry -> release the lease.

An uninterrupted N-stage run on a fresh task costs 2N + 3 requests: manifest, lease,
two writes per stage, release. Every state write is a compare-and-swap against the
version this engine last saw; a refused write is explained by one read (the store's
reconciliation): a newer epoch means a successor fenced us out (``LeaseLost``),
CANCELED means the task was canceled (the run returns a CANCELED summary).

Two hooks let another thread end a run early (the container runner's SIGTERM handling):
``request_stop`` starts no further attempt (the run returns a RUNNING summary), and
``interrupt`` records the attempt in flight as interrupted, by a compare-and-swap
against the attempt's RUNNING record that races the stage's own outcome write: exactly
one of the two lands. The engine's thread then writes nothing more for that attempt.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic

from pydantic import TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError

from eleanor_cloud.backends.base import Replace, Version
from eleanor_cloud.clock import Clock, format_ts, utc_now
from eleanor_cloud.engine.events import EngineEvent, EventHandler, EventKind
from eleanor_cloud.engine.lease import LeaseManager, default_holder
from eleanor_cloud.engine.operations import (
    cancel_task,
    fence_task,
    interrupted_entry,
    reset_stages,
    retry_failed_task,
)
from eleanor_cloud.engine.retry import Backoff, current_run, may_attempt
from eleanor_cloud.engine.stage import BaseStage, StageContext, StateT
from eleanor_cloud.engine.storeview import private_view
from eleanor_cloud.engine.summary import TaskSummary, summarize
from eleanor_cloud.errors import (
    AlreadyExists,
    Conflict,
    EleanorError,
    InvalidState,
    LeaseLost,
    NotFound,
    TaskBindingError,
)
from eleanor_cloud.keys import validate_task_id
from eleanor_cloud.models import (
    BaseStageState,
    RetryPolicy,
    StageStateHistoryEntry,
    StageStatus,
)
from eleanor_cloud.store.records import Record, TaskManifest
from eleanor_cloud.store.state_store import StateStore

__all__ = ["TaskEngine"]

_LOGGER = logging.getLogger("eleanor_cloud.engine")


class _Canceled(Exception):
    """Internal: a write found the stage CANCELED."""

    def __init__(self, stage_name: str) -> None:
        super().__init__(stage_name)
        self.stage_name = stage_name


class _Interrupted(Exception):
    """Internal: ``interrupt()`` recorded the attempt; the engine's thread stops."""

    def __init__(self, stage_name: str, message: str) -> None:
        super().__init__(message)
        self.stage_name = stage_name
        self.message = message


@dataclass
class _Run:
    """What one call to run()/rollback() carries around."""

    lease: LeaseManager
    states: dict[str, Any]
    began: dict[str, str]
    end: datetime | None = None
    cancel_seen: bool = False
    last_probe: datetime | None = None


@dataclass
class _Attempt:
    """The attempt in flight, shared by the engine's thread and ``interrupt()``.

    Fields change under the engine's ``_control`` lock. ``version`` is the RUNNING
    record's version once written: both outcome writes (the stage's and the
    interruption's) are a compare-and-swap against it, so at most one lands.
    """

    run: _Run
    name: str
    number: int
    before_status: StageStatus
    begin: datetime
    running: Any = None
    version: Version | None = None
    closed: bool = False  # the engine's thread is done with the attempt
    claimed: bool = False  # interrupt() is writing the interrupted record
    recorded: Any = None  # the interrupted state, once interrupt() wrote it
    message: str = ""
    settled: threading.Event = field(default_factory=threading.Event)


def _check_reason(reason: object) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidState(f"reason must be a non-empty string, got {reason!r}")
    return reason


def _dotted(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "<root>"
    return f"field {where!r}: {first['msg']}"


class TaskEngine(Generic[StateT]):
    """Runs one task's stages in order, checkpointing each attempt into ``store``.

    ``run()`` starts or resumes the task (the same call) and returns a
    :class:`TaskSummary`. Another host may resume the task after a crash; two engines
    never advance it at once (a lease with fencing; see :mod:`.lease`).

    Options: ``retry_policy``/``max_attempts`` (NONE: first failure is final; STAGE: each
    stage gets ``max_attempts``; GLOBAL: ``max_attempts`` executions for the whole task,
    successes included), ``backoff`` between attempts, ``lease_ttl`` seconds (renewed
    every ``renew_interval``, default ttl/3, while the run lasts), ``wait_for_lease``
    seconds to poll a held lease before raising ``LeaseHeld``, ``clock_skew_tolerance``
    seconds added to a lease's expiry before it is taken over, ``on_event`` (called
    with :class:`EngineEvent`; the lease-lost event comes from the renewer thread),
    ``auto_rollback`` (roll completed stages back when the task ends in ERROR),
    ``cancel_check_interval`` (minimum seconds between the reads behind
    ``ctx.cancelled``), ``clock``/``sleep`` (injectable), ``holder`` (lease holder
    name, default ``host/pid/random``), ``metadata`` (stored in the manifest).

    Every argument is checked here, before any I/O. The engine works on private views
    of ``store`` (same backend and prefix): its cached versions and epoch are its own.

    From another thread, :meth:`request_stop` ends a run before its next attempt and
    :meth:`interrupt` records the running attempt as interrupted and releases the lease.
    """

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
        self.task_id = validate_task_id(task_id)
        if not isinstance(state_class, type) or not issubclass(state_class, BaseStageState):
            raise InvalidState(
                f"state_class must be a subclass of BaseStageState, got {state_class!r}"
            )
        if not isinstance(store, StateStore):
            raise InvalidState(f"store must be a StateStore, got {type(store).__name__}")
        stage_list = list(stages) if not isinstance(stages, BaseStage) else [stages]
        if not stage_list:
            raise InvalidState(f"task {task_id!r}: stages must not be empty")
        names: list[str] = []
        for stage in stage_list:
            if not isinstance(stage, BaseStage):
                raise InvalidState(
                    f"task {task_id!r}: every stage must be a BaseStage instance, got {stage!r}"
                )
            name = stage.stage_name
            if name in names:
                raise InvalidState(f"task {task_id!r}: duplicate stage name {name!r}")
            duration = stage.expected_duration
            if duration is not None and not duration >= 0:
                raise InvalidState(
                    f"stage {name!r}: expected_duration must be >= 0 seconds, got {duration}"
                )
            names.append(name)
        if not isinstance(retry_policy, RetryPolicy):
            raise InvalidState(f"retry_policy must be a RetryPolicy, got {retry_policy!r}")
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise InvalidState(f"max_attempts must be an int >= 1, got {max_attempts!r}")
        if retry_policy is RetryPolicy.GLOBAL and max_attempts < len(names):
            raise InvalidState(
                f"GLOBAL retry policy: max_attempts ({max_attempts}) is below the number of "
                f"stages ({len(names)}); every execution consumes an attempt, so the task "
                "could never complete"
            )
        if backoff is None:
            backoff = Backoff()
        elif not isinstance(backoff, Backoff):
            raise InvalidState(f"backoff must be a Backoff, got {backoff!r}")
        if not lease_ttl > 0:
            raise InvalidState(f"lease_ttl must be > 0 seconds, got {lease_ttl}")
        if not wait_for_lease >= 0:
            raise InvalidState(f"wait_for_lease must be >= 0 seconds, got {wait_for_lease}")
        if not clock_skew_tolerance >= 0:
            raise InvalidState(
                f"clock_skew_tolerance must be >= 0 seconds, got {clock_skew_tolerance}"
            )
        if renew_interval is not None and not renew_interval > 0:
            raise InvalidState(f"renew_interval must be > 0 seconds, got {renew_interval}")
        if not cancel_check_interval >= 0:
            raise InvalidState(
                f"cancel_check_interval must be >= 0 seconds, got {cancel_check_interval}"
            )
        if metadata is not None and not (
            isinstance(metadata, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
        ):
            raise InvalidState(f"metadata must be a dict of str to str, got {metadata!r}")
        if on_event is not None and not callable(on_event):
            raise InvalidState(f"on_event must be callable, got {on_event!r}")
        # A stage with no stored object reads as a fresh state, so one must be buildable.
        try:
            state_class(task_id=self.task_id, stage_name=names[0], status=StageStatus.CREATED)
        except ValidationError as exc:
            raise InvalidState(
                f"state class {state_class.__name__} needs defaults for every field of its "
                f"own (stages that have not run have no stored state): {_first_error(exc)}"
            ) from exc
        result_field = state_class.model_fields["result"]
        self._result_type: Any = result_field.annotation
        # Validates what a stage returns against the state's own result type.
        self._result_adapter: TypeAdapter[Any] = TypeAdapter(
            Any if self._result_type is None else self._result_type
        )

        self.stages = stage_list
        self.stage_names = tuple(names)
        self.state_class = state_class
        self.retry_policy = retry_policy
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.lease_ttl = float(lease_ttl)
        self.wait_for_lease = float(wait_for_lease)
        self.clock_skew_tolerance = float(clock_skew_tolerance)
        self.renew_interval = renew_interval
        self.cancel_check_interval = float(cancel_check_interval)
        self.auto_rollback = auto_rollback
        self.holder = holder or default_holder()
        self.metadata = dict(metadata or {})
        self._on_event = on_event
        self._clock = clock
        self._sleep = sleep
        self._user_store = store
        self._store = private_view(store)  # stage writes: the CAS base is ours alone
        self._probe = private_view(store)  # reads that must not move that base
        self._log = logging.LoggerAdapter(_LOGGER, {"task_id": self.task_id, "stage_name": None})
        self._manifest: TaskManifest | None = None
        self._fresh = False
        # Stop/interrupt requests from other threads. A condition: interrupt() waits on
        # it for the RUNNING write of an attempt that is just starting. Reentrant, so
        # request_stop() from a signal handler on the engine's own thread cannot
        # deadlock on it.
        self._control = threading.Condition(threading.RLock())
        self._stop_reason: str | None = None
        self._stop_event = threading.Event()
        self._attempt_now: _Attempt | None = None

    # -- plumbing ----------------------------------------------------------------------

    @property
    def on_event(self) -> EventHandler | None:
        """The event handler; assignable, e.g. to chain a printer after the user's."""
        return self._on_event

    @on_event.setter
    def on_event(self, handler: EventHandler | None) -> None:
        if handler is not None and not callable(handler):
            raise InvalidState(f"on_event must be callable, got {handler!r}")
        self._on_event = handler

    def __repr__(self) -> str:
        return (
            f"TaskEngine(task_id={self.task_id!r}, stages={list(self.stage_names)}, "
            f"store={self._user_store!r})"
        )

    def _stage_log(self, name: str, attempt: int) -> logging.LoggerAdapter[logging.Logger]:
        return logging.LoggerAdapter(
            _LOGGER, {"task_id": self.task_id, "stage_name": name, "attempt": attempt}
        )

    def _slog(self, name: str) -> logging.LoggerAdapter[logging.Logger]:
        return logging.LoggerAdapter(_LOGGER, {"task_id": self.task_id, "stage_name": name})

    def _emit(
        self,
        kind: EventKind,
        stage_name: str | None = None,
        attempt: int = 0,
        status: StageStatus | None = None,
        message: str = "",
    ) -> None:
        event = EngineEvent(kind, self.task_id, stage_name, attempt, status, message)
        _LOGGER.debug(
            "task %s stage %s: %s %s",
            self.task_id,
            stage_name,
            kind,
            message,
            extra={"task_id": self.task_id, "stage_name": stage_name},
        )
        if self._on_event is None:
            return
        try:
            self._on_event(event)
        except Exception:
            _LOGGER.exception(
                "task %s: on_event handler failed for %s",
                self.task_id,
                kind,
                extra={"task_id": self.task_id, "stage_name": stage_name},
            )

    def _fresh_state(self, name: str) -> StateT:
        return self.state_class(task_id=self.task_id, stage_name=name, status=StageStatus.CREATED)

    # -- bind ------------------------------------------------------------------------

    def bind(self) -> TaskManifest:
        """Write the task manifest (one request), or check the stored one matches.

        Raises ``TaskBindingError`` naming both definitions if the task exists with a
        different stage list or state class.
        """
        manifest = TaskManifest(
            task_id=self.task_id,
            stages=self.stage_names,
            state_class=_dotted(self.state_class),
            created_at=format_ts(self._clock()),
            metadata=self.metadata,
        )
        try:
            self._store.create_manifest(manifest)
        except AlreadyExists as exc:
            current = exc.current
            stored = (
                current.value
                if isinstance(current, Record)
                else self._store.load_manifest(self.task_id)
            )
            self._check_manifest(stored)
            self._manifest, self._fresh = stored, False
            return stored
        self._log.info("task %s: bound with stages %s", self.task_id, list(self.stage_names))
        self._manifest, self._fresh = manifest, True
        return manifest

    def _check_manifest(self, stored: TaskManifest) -> None:
        mine = (self.stage_names, _dotted(self.state_class))
        theirs = (tuple(stored.stages), stored.state_class)
        if mine != theirs:
            raise TaskBindingError(
                f"task {self.task_id!r} exists with stages {list(theirs[0])} and state class "
                f"{theirs[1]}; this engine has stages {list(mine[0])} and state class "
                f"{mine[1]}",
                key=self._store.manifest_key(self.task_id),
                operation="bind",
            )

    # -- lease and loading -----------------------------------------------------------

    def _open(self, end: datetime | None) -> _Run:
        """Bind if needed, take the lease, load (and fence) the states."""
        if self._manifest is None:
            self.bind()
        fresh, self._fresh = self._fresh, False
        lease = LeaseManager(
            self._store,
            self.task_id,
            holder=self.holder,
            ttl=self.lease_ttl,
            clock=self._clock,
            sleep=self._sleep,
            clock_skew_tolerance=self.clock_skew_tolerance,
            wait=self.wait_for_lease,
            renew_interval=self.renew_interval,
            on_lost=lambda why: self._emit("lease_lost", message=why),
        )
        try:
            lease.acquire(probably_new=fresh)
            self._store.epoch = lease.epoch
            self._store.forget(self.task_id)  # versions from an earlier run are no base
            self._emit(
                "lease_takeover" if lease.takeover else "lease_acquired",
                message=f"epoch {lease.epoch}",
            )
            records: dict[str, Record[StateT]] = {}
            # Nobody ever held the lease of a task we just bound: nothing can exist.
            if not (fresh and lease.created):
                records = {
                    n: r
                    for n, r in self._store.load_task_records(
                        self.task_id, self.state_class
                    ).items()
                    if n in self.stage_names
                }
            began = {n: r.written_at for n, r in records.items()}
            if lease.takeover:
                records = fence_task(
                    self._store, self.task_id, self.stage_names, self.state_class, records
                )
            states: dict[str, Any] = {
                n: records[n].value if n in records else self._fresh_state(n)
                for n in self.stage_names
            }
            lease.start_renewing()
        except BaseException:
            lease.release()
            raise
        return _Run(lease, states, began, end)

    def _write(self, run: _Run, state: StateT) -> Record[StateT]:
        """Compare-and-swap one stage state; explain a refusal."""
        run.lease.check()
        try:
            record = self._store.save(state)
        except Conflict as exc:
            current = exc.current if isinstance(exc.current, Record) else None
            raise self._explain(run, state.stage_name, current) from exc
        run.states[state.stage_name] = state
        return record

    def _explain(self, run: _Run, name: str, current: Record[Any] | None) -> Exception:
        if current is None:
            try:
                current = self._probe.load_record(self.task_id, name, self.state_class)
            except NotFound:
                return LeaseLost(
                    f"task {self.task_id!r} stage {name!r}: the stage object "
                    "disappeared while this holder was writing it"
                )
        if current.epoch > run.lease.epoch:
            return LeaseLost(
                f"task {self.task_id!r} stage {name!r}: fenced out by {current.writer!r} at "
                f"epoch {current.epoch} (ours {run.lease.epoch}); this holder stops writing",
                key=current.key,
            )
        if current.value.status is StageStatus.CANCELED:
            return _Canceled(name)
        return LeaseLost(
            f"task {self.task_id!r} stage {name!r} was changed by {current.writer!r} "
            f"(epoch {current.epoch}) while this holder ran it; stopping to be safe",
            key=current.key,
        )

    # -- run -------------------------------------------------------------------------

    def run(
        self, *, deadline: datetime | None = None, time_budget: float | None = None
    ) -> TaskSummary:
        """Run or resume the task until it completes, fails, is canceled or runs out of time.

        ``deadline`` (aware datetime) and ``time_budget`` (seconds from now) bound the
        run: no stage is started that cannot finish in time by its
        ``expected_duration``; the run then releases the lease and returns a summary
        with status RUNNING and ``done=False``. After :meth:`request_stop` it returns
        such a summary before its next attempt, with the stop reason as ``message``;
        after a successful :meth:`interrupt` it returns once the stage's code returns,
        with the interrupted stage's status (RETRY: task RUNNING; ERROR: task ERROR,
        no automatic rollback, the lease is already released). Raises ``LeaseHeld`` if
        another holder is running it, ``LeaseLost`` if a successor fenced this one out.
        """
        if deadline is not None and (not isinstance(deadline, datetime) or deadline.tzinfo is None):
            raise InvalidState(f"deadline must be a timezone-aware datetime, got {deadline!r}")
        if time_budget is not None and not time_budget >= 0:
            raise InvalidState(f"time_budget must be >= 0 seconds, got {time_budget}")
        end = deadline
        if time_budget is not None:
            by_budget = self._clock() + timedelta(seconds=time_budget)
            end = by_budget if end is None else min(end, by_budget)
        finished = self._already_complete()
        if finished is not None:
            return finished
        run = self._open(end)
        try:
            self._emit("task_started")
            return self._advance(run)
        except _Canceled:
            return self._canceled_summary()
        except _Interrupted as exc:
            return self._interrupted_summary(run, exc)
        except LeaseLost as exc:
            self._emit("lease_lost", message=str(exc))
            self._log.warning("task %s: %s", self.task_id, exc)
            raise
        finally:
            run.lease.release()

    def _already_complete(self) -> TaskSummary | None:
        """The summary of a bound task that already completed, read without the lease.

        A repeated call (a retried Lambda event, an idempotent re-run) should cost reads,
        not lease writes. Stages complete in order and nothing but a rollback (which
        resets the last stage first) un-completes one, so the final stage decides with
        one GET; the manifest names the other stages, so no LIST is needed to read them.
        Anything short of all-COMPLETE goes the normal way, under the lease.
        """
        if self._manifest is None:
            self.bind()
        if self._fresh:
            return None
        last = self.stage_names[-1]

        def load(name: str) -> StateT | None:
            try:
                return self._probe.load(self.task_id, name, self.state_class)
            except NotFound:
                return None

        final = load(last)
        if final is None or final.status is not StageStatus.COMPLETE:
            return None
        others = list(self.stage_names[:-1])
        if len(others) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(min(8, len(others))) as pool:
                loaded = list(pool.map(load, others))
        else:
            loaded = [load(n) for n in others]
        states = {n: st for n, st in zip(others, loaded, strict=True) if st is not None}
        states[last] = final
        summary = summarize(self.task_id, self.stage_names, states)
        if summary.status is not StageStatus.COMPLETE:
            return None
        self._emit("task_completed", status=StageStatus.COMPLETE, message="already complete")
        return summary

    def _remaining(self, run: _Run) -> float | None:
        if run.end is None:
            return None
        return (run.end - self._clock()).total_seconds()

    def _advance(self, run: _Run) -> TaskSummary:
        states = run.states
        for index, stage in enumerate(self.stages):
            name = self.stage_names[index]
            state = states[name]
            if state.status is StageStatus.COMPLETE:
                continue
            if state.status is StageStatus.CANCELED:
                return self._canceled_summary()
            if state.status is StageStatus.ERROR:
                return self._failed(run, index, already=True)
            if (
                state.status is StageStatus.RUNNING
                and self._record_interrupted(run, name) is StageStatus.ERROR
            ):
                return self._failed(run, index)
            while True:
                state = states[name]
                if not may_attempt(self.retry_policy, self.max_attempts, state, states.values()):
                    self._strand(run, name)
                    return self._failed(run, index)
                expected = stage.expected_duration or 0.0
                delay = 0.0
                if state.status is StageStatus.RETRY:
                    delay = self.backoff.delay(max(1, current_run(state)))
                remaining = self._remaining(run)
                if remaining is not None and remaining < delay + expected:
                    return self._pause(run, name, expected, delay, remaining)
                if self._stop_reason is not None:
                    return self._stopped(run, name)
                if delay > 0:
                    self._slog(name).info(
                        "task %s stage %s: retrying in %.2fs", self.task_id, name, delay
                    )
                    self._backoff(delay)
                outcome = self._attempt(run, stage, name)
                if outcome is None:  # a stop was requested after the check above
                    return self._stopped(run, name)
                if outcome is StageStatus.COMPLETE:
                    break
                if outcome is StageStatus.ERROR:
                    return self._failed(run, index)
        self._log.info("task %s: complete", self.task_id)
        self._emit("task_completed", status=StageStatus.COMPLETE)
        return summarize(self.task_id, self.stage_names, states)

    def _pause(
        self, run: _Run, name: str, expected: float, delay: float, remaining: float
    ) -> TaskSummary:
        message = (
            f"deadline: stage {name!r} needs {expected + delay:.3f}s "
            f"(expected duration {expected:.3f}s + backoff {delay:.3f}s) but "
            f"{max(remaining, 0.0):.3f}s remain; resume later"
        )
        self._log.info("task %s: paused: %s", self.task_id, message)
        self._emit("task_paused", name, status=StageStatus.RUNNING, message=message)
        return summarize(
            self.task_id,
            self.stage_names,
            run.states,
            force_status=StageStatus.RUNNING,
            message=message,
        )

    def _backoff(self, delay: float) -> None:
        if self._sleep is time.sleep:
            # The default sleep: wait on the stop event instead, so that request_stop()
            # (a container being stopped) ends a long backoff at once.
            self._stop_event.wait(delay)
        else:
            self._sleep(delay)

    def _stopped(self, run: _Run, name: str) -> TaskSummary:
        reason = self._stop_reason or "stop requested"
        self._log.info("task %s: stopped before stage %s: %s", self.task_id, name, reason)
        self._emit("task_paused", name, status=StageStatus.RUNNING, message=reason)
        return summarize(
            self.task_id,
            self.stage_names,
            run.states,
            force_status=StageStatus.RUNNING,
            message=reason,
        )

    def _interrupted_summary(self, run: _Run, exc: _Interrupted) -> TaskSummary:
        summary = summarize(self.task_id, self.stage_names, run.states, message=exc.message)
        if summary.status is StageStatus.ERROR:
            self._emit("task_failed", exc.stage_name, status=StageStatus.ERROR, message=exc.message)
        else:
            self._emit("task_paused", exc.stage_name, status=summary.status, message=exc.message)
        return summary

    # -- stop and interrupt (other threads) --------------------------------------------

    def request_stop(self, reason: str) -> None:
        """Ask the running (or next) ``run()`` to start no further attempt.

        Thread-safe. The run checks it before each attempt (next to the deadline
        check) and also ends a retry backoff early when the engine uses the default
        ``sleep``; it then releases the lease and returns a RUNNING summary
        (``done=False``, ``next_stage`` set) with ``reason`` as its ``message``. A stage
        already running is left to finish and is checkpointed as usual. The request
        stays in effect for later ``run()`` calls of this engine (the first reason is
        kept): build a new engine to run the task again.
        """
        reason = _check_reason(reason)
        with self._control:
            if self._stop_reason is None:
                self._stop_reason = reason
            self._stop_event.set()

    @property
    def stop_requested(self) -> str | None:
        """The reason given to :meth:`request_stop` (or :meth:`interrupt`), else None."""
        return self._stop_reason

    def interrupt(self, reason: str) -> bool:
        """Record the attempt now running as interrupted and release the lease.

        For another thread (e.g. a container's stop handler once its grace period ran
        out) while ``run()`` executes a stage. Also requests a stop (see
        :meth:`request_stop`). Writes the attempt's history entry ``interrupted:
        <reason>`` with status RETRY, or ERROR when its attempt budget is spent (the
        engine's usual failure accounting), as a compare-and-swap against the
        attempt's RUNNING record; emits ``stage_interrupted``; releases the lease.

        Returns True when the interrupted record was written. Returns False when no
        attempt was running or the stage's outcome was written first (the write was
        refused: exactly one of the two lands); ``run()`` then stops at its next
        attempt. After True, the stage's own outcome is never written: when the
        stage's code returns (or raises), ``run()`` returns the summary with the
        interrupted status, and ``ctx.cancelled`` is true meanwhile. Waits for the
        RUNNING write of an attempt that is just starting, so call it from another
        thread than the one running ``run()`` (a signal handler should hand it to one,
        as the container runner does). Store errors other than the refusal (e.g.
        ``Unavailable``) are raised; the interruption was then not recorded by this call.
        """
        reason = _check_reason(reason)
        with self._control:
            if self._stop_reason is None:
                self._stop_reason = reason
            self._stop_event.set()
            current = self._attempt_now
            if current is None:
                return False
            self._control.wait_for(lambda: current.closed or current.version is not None)
            if current.closed or current.claimed:
                return False
            current.claimed = True
        try:
            if not self._write_interrupted(current, reason):
                return False
            self._slog(current.name).warning(
                "task %s stage %s: %s", self.task_id, current.name, current.message
            )
            self._emit(
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

    def _write_interrupted(self, current: _Attempt, reason: str) -> bool:
        run, running = current.run, current.running
        if run.lease.lost or current.version is None:
            return False  # a successor holds the task; it records the lost attempt
        entry = self._entry(
            current.number,
            current.before_status,
            current.begin,
            StageStatus.RETRY,
            self._clock(),
            f"interrupted: {reason}",
        )
        status = self._failure_status(run, running, entry)
        entry = entry.model_copy(update={"end_status": status})
        state = running.model_copy(update={"status": status, "history": [*running.history, entry]})
        try:
            # An explicit version: the store's version cache is per thread, and this
            # must replace exactly the RUNNING record the stage's outcome would.
            self._store.save(state, mode=Replace(current.version))
        except Conflict:
            self._slog(current.name).info(
                "task %s stage %s: not interrupted: its outcome was written first",
                self.task_id,
                current.name,
            )
            return False
        with self._control:
            run.states[current.name] = state
            current.recorded, current.message = state, entry.message
        return True

    def _lost_to_interrupt(self, current: _Attempt) -> bool:
        """Whether interrupt() recorded this attempt (waiting for it if it is writing)."""
        with self._control:
            claimed = current.claimed
        if claimed:
            current.settled.wait()
        return current.recorded is not None

    def _close(self, current: _Attempt) -> None:
        with self._control:
            current.closed = True
            if self._attempt_now is current:
                self._attempt_now = None
            self._control.notify_all()

    # -- one attempt -----------------------------------------------------------------

    def _entry(
        self,
        attempt: int,
        begin_status: StageStatus,
        begin: datetime,
        end_status: StageStatus,
        end: datetime,
        message: str,
    ) -> StageStateHistoryEntry:
        return StageStateHistoryEntry(
            attempt=attempt,
            begin_status=begin_status,
            begin_ts=format_ts(begin),
            end_status=end_status,
            end_ts=format_ts(end),
            message=message,
            run_time_seconds=max(0.0, (end - begin).total_seconds()),
        )

    def _failure_status(
        self, run: _Run, state: StateT, entry: StageStateHistoryEntry
    ) -> StageStatus:
        """RETRY if the budget allows another attempt after this failed one, else ERROR."""
        if self.retry_policy is RetryPolicy.NONE:
            return StageStatus.ERROR
        probe = state.model_copy(
            update={"status": StageStatus.RETRY, "history": [*state.history, entry]}
        )
        others = [s for n, s in run.states.items() if n != state.stage_name]
        ok = may_attempt(self.retry_policy, self.max_attempts, probe, [*others, probe])
        return StageStatus.RETRY if ok else StageStatus.ERROR

    def _record_interrupted(self, run: _Run, name: str) -> StageStatus:
        """A stage found RUNNING under our lease: its attempt was lost; record it."""
        state = run.states[name]
        now = format_ts(self._clock())
        detail = (
            f"attempt {state.attempts} was found RUNNING by {self.holder!r} (epoch "
            f"{run.lease.epoch}); its holder stopped without recording an outcome"
        )
        entry = interrupted_entry(
            state, began=run.began.get(name), now=now, end_status=StageStatus.RETRY, detail=detail
        )
        status = self._failure_status(run, state, entry)
        entry = entry.model_copy(update={"end_status": status})
        self._write(
            run, state.model_copy(update={"status": status, "history": [*state.history, entry]})
        )
        self._slog(name).warning("task %s stage %s: %s", self.task_id, name, entry.message)
        self._emit("stage_interrupted", name, state.attempts, status, entry.message)
        return status

    def _check_result(self, name: str, returned: Any, work: StateT) -> Any:
        if returned is None:
            return work.result
        try:
            return self._result_adapter.validate_python(returned)
        except ValidationError as exc:
            raise InvalidState(
                f"stage {name!r} returned {type(returned).__name__}, but the result type of "
                f"{self.state_class.__name__} is {self._result_type!r}: {_first_error(exc)}"
            ) from exc

    def _finished_state(
        self, name: str, work: StateT, running: StateT, result: Any, entry: StageStateHistoryEntry
    ) -> StateT:
        """The stage's own fields from ``work``, the engine's from ``running``; validated."""
        data = work.model_dump(warnings=False)
        data.update(
            task_id=self.task_id,
            stage_name=name,
            status=StageStatus.COMPLETE,
            attempts=running.attempts,
            history=[*running.history, entry],
            result=result,
        )
        try:
            final = self.state_class.model_validate(data)
            # What the store will write must also read back: check the JSON round trip
            # here, so a bad value fails this attempt instead of the whole run.
            self.state_class.model_validate(final.model_dump(mode="json"))
        except ValidationError as exc:
            raise InvalidState(
                f"stage {name!r} left its state invalid: {_first_error(exc)}"
            ) from exc
        except PydanticSerializationError as exc:
            raise InvalidState(
                f"stage {name!r} left its state not JSON-serializable: {exc}"
            ) from exc
        return final

    def _attempt(self, run: _Run, stage: BaseStage[StateT], name: str) -> StageStatus | None:
        """One attempt; ``None`` if a stop was requested before it could start."""
        before: StateT = run.states[name]
        attempt = before.attempts + 1
        begin = self._clock()
        running = before.model_copy(
            deep=True, update={"status": StageStatus.RUNNING, "attempts": attempt}
        )
        current = _Attempt(run, name, attempt, before.status, begin)
        with self._control:
            # The stop check and the registration are one step under the lock that
            # interrupt() takes: it either stops this attempt from starting or finds it.
            if self._stop_reason is not None:
                return None
            self._attempt_now = current
        try:
            record = self._write(run, running)
            with self._control:
                current.running, current.version = running, record.version
                self._control.notify_all()
            return self._run_attempt(run, stage, current)
        finally:
            self._close(current)

    def _run_attempt(self, run: _Run, stage: BaseStage[StateT], current: _Attempt) -> StageStatus:
        name, attempt, begin = current.name, current.number, current.begin
        running: StateT = current.running
        before_status = current.before_status
        self._slog(name).info("task %s stage %s: attempt %d started", self.task_id, name, attempt)
        self._emit("stage_started", name, attempt, StageStatus.RUNNING)
        work = running.model_copy(deep=True)
        ctx = StageContext(
            task_id=self.task_id,
            stage_name=name,
            attempt=attempt,
            logger=self._stage_log(name, attempt),
            stage_order=self.stage_names,
            states=run.states,
            remaining_time=lambda: self._remaining(run),
            cancelled=lambda: current.recorded is not None or self._is_cancelled(run, name),
        )
        finished: StateT | None = None
        try:
            returned = stage.run(work, ctx)
            result = self._check_result(name, returned, work)
            end = self._clock()
            entry = self._entry(
                attempt, before_status, begin, StageStatus.COMPLETE, end, "completed"
            )
            finished = self._finished_state(name, work, running, result, entry)
            error: Exception | None = None
        except Exception as exc:  # noqa: BLE001 - any failure of user code is an attempt's
            error = exc
        if error is not None or finished is None:
            end = self._clock()
            message = f"{type(error).__name__}: {error}"
            entry = self._entry(attempt, before_status, begin, StageStatus.RETRY, end, message)
            status = self._failure_status(run, running, entry)
            entry = entry.model_copy(update={"end_status": status})
            finished = running.model_copy(
                update={"status": status, "history": [*running.history, entry]}
            )
        # interrupt() already recorded this attempt: its outcome must not be written.
        if self._lost_to_interrupt(current):
            raise _Interrupted(name, current.message)
        try:
            self._write(run, finished)
        except Exception as exc:
            # interrupt() won the compare-and-swap race on the RUNNING record.
            if self._lost_to_interrupt(current):
                raise _Interrupted(name, current.message) from None
            if isinstance(exc, _Canceled):
                self._record_canceled(run, name, entry)
            raise
        if finished.status is StageStatus.COMPLETE:
            self._slog(name).info(
                "task %s stage %s: attempt %d completed in %.3fs",
                self.task_id,
                name,
                attempt,
                entry.run_time_seconds,
            )
            self._emit("stage_completed", name, attempt, StageStatus.COMPLETE)
        else:
            level = logging.WARNING if finished.status is StageStatus.RETRY else logging.ERROR
            self._slog(name).log(
                level,
                "task %s stage %s: attempt %d failed (%s): %s",
                self.task_id,
                name,
                attempt,
                finished.status.value,
                entry.message,
            )
            kind: EventKind = (
                "stage_retry" if finished.status is StageStatus.RETRY else "stage_failed"
            )
            self._emit(kind, name, attempt, finished.status, entry.message)
        return finished.status

    def _record_canceled(self, run: _Run, name: str, entry: StageStateHistoryEntry) -> None:
        """Append the canceled attempt's history entry to the CANCELED state (best effort)."""
        try:
            record = self._store.load_record(self.task_id, name, self.state_class)
            state = record.value
            if (
                record.epoch > run.lease.epoch
                or state.status is not StageStatus.CANCELED
                or len(state.history) >= state.attempts
            ):
                return
            note = entry.model_copy(
                update={
                    "end_status": StageStatus.CANCELED,
                    "message": f"canceled while running; outcome discarded: {entry.message}",
                }
            )
            self._store.save(state.model_copy(update={"history": [*state.history, note]}))
        except EleanorError as exc:
            self._slog(name).warning(
                "task %s stage %s: could not record the canceled attempt: %s",
                self.task_id,
                name,
                exc,
            )

    def _is_cancelled(self, run: _Run, name: str) -> bool:
        if run.lease.lost or run.cancel_seen:
            return True
        now = self._clock()
        if (
            run.last_probe is not None
            and (now - run.last_probe).total_seconds() < self.cancel_check_interval
        ):
            return False
        run.last_probe = now
        try:
            record = self._probe.load_record(self.task_id, name, self.state_class)
        except EleanorError as exc:  # transient: ask again after the interval
            self._slog(name).debug(
                "task %s stage %s: cancel check failed: %s", self.task_id, name, exc
            )
            return False
        if record.value.status is StageStatus.CANCELED or record.epoch > run.lease.epoch:
            run.cancel_seen = True
        return run.cancel_seen

    # -- endings ---------------------------------------------------------------------

    def _strand(self, run: _Run, name: str) -> None:
        """The budget is spent before this stage could start: mark it ERROR."""
        state = run.states[name]
        if state.status is StageStatus.ERROR:
            return
        self._write(run, state.model_copy(update={"status": StageStatus.ERROR}))
        message = (
            f"{self.retry_policy.value} attempt budget of {self.max_attempts} spent "
            f"before stage {name!r} could start"
        )
        self._slog(name).error("task %s stage %s: %s", self.task_id, name, message)
        self._emit("stage_failed", name, state.attempts, StageStatus.ERROR, message)

    def _failed(self, run: _Run, index: int, *, already: bool = False) -> TaskSummary:
        name = self.stage_names[index]
        if not already:
            self._emit("task_failed", name, status=StageStatus.ERROR)
            if self.auto_rollback:
                self._compensate(run, index)
        return summarize(self.task_id, self.stage_names, run.states)

    def _compensate(self, run: _Run, failed_index: int) -> None:
        """Saga: roll back every COMPLETE stage before the failed one, last first."""
        first_complete = next(
            (
                n
                for n in self.stage_names[:failed_index]
                if run.states[n].status is StageStatus.COMPLETE
            ),
            None,
        )
        if first_complete is None:
            return
        names = self.stage_names[:failed_index]
        reset_stages(
            self._store,
            self.task_id,
            names,
            run.states,
            first_complete,
            clock=self._clock,
            began=run.began,
            before_reset=self._rollback_hook(run),
        )

    def _rollback_hook(self, run: _Run) -> Callable[[str, Any], None]:
        def call(name: str, state: Any) -> None:
            stage = self.stages[self.stage_names.index(name)]
            run.lease.check()
            ctx = StageContext(
                task_id=self.task_id,
                stage_name=name,
                attempt=state.attempts,
                logger=self._stage_log(name, state.attempts),
                stage_order=self.stage_names,
                states=run.states,
                remaining_time=lambda: self._remaining(run),
                cancelled=lambda: run.lease.lost,
            )
            stage.rollback(state.model_copy(deep=True), ctx)
            self._emit("stage_rolled_back", name, state.attempts, StageStatus.CREATED)

        return call

    def _canceled_summary(self) -> TaskSummary:
        self._emit("task_canceled", status=StageStatus.CANCELED)
        return self.status()

    # -- other operations --------------------------------------------------------------

    def status(self) -> TaskSummary:
        """Read-only summary: one GET (manifest), one LIST, a GET per stored stage.

        An unbound task reads as UNBOUND; another definition raises TaskBindingError.
        """
        try:
            manifest = self._probe.load_manifest(self.task_id)
        except NotFound:
            return summarize(self.task_id, self.stage_names, {}, bound=False)
        self._check_manifest(manifest)
        records = self._probe.load_task_records(self.task_id, self.state_class)
        return summarize(self.task_id, self.stage_names, {n: r.value for n, r in records.items()})

    def cancel(self) -> TaskSummary:
        """Cancel the task (see :func:`eleanor_cloud.engine.cancel_task`)."""
        return cancel_task(self._user_store, self.task_id, self.state_class)

    def retry_failed(self) -> TaskSummary:
        """Redrive ERROR stages with a fresh budget; then call :meth:`run` to resume."""
        return retry_failed_task(self._user_store, self.task_id, self.state_class)

    def rollback(self, to_stage: str) -> TaskSummary:
        """Roll the task back to ``to_stage``: call ``rollback()`` on COMPLETE stages from
        the last down to ``to_stage`` (reverse order), resetting each to CREATED with its
        result cleared and its history kept. RETRY/ERROR stages in that range are reset
        too (no rollback call: they never completed), so the task can run again. Takes
        the lease. A failing ``rollback()`` stops the rollback and is raised; the stages
        already reset stay reset, the failing one stays COMPLETE.
        """
        if to_stage not in self.stage_names:
            raise InvalidState(
                f"task {self.task_id!r} has no stage {to_stage!r} "
                f"(stages: {list(self.stage_names)})"
            )
        run = self._open(None)
        try:
            reset_stages(
                self._store,
                self.task_id,
                self.stage_names,
                run.states,
                to_stage,
                clock=self._clock,
                began=run.began,
                before_reset=self._rollback_hook(run),
            )
        finally:
            run.lease.release()
        return summarize(self.task_id, self.stage_names, run.states)
