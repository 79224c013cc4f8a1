"""The container runner: run one task in an ECS/Fargate (Spot) task and survive SIGTERM.

ECS stops a container by sending SIGTERM, then SIGKILL ``stopTimeout`` seconds later
(30 s by default, at most 120 s on Fargate; a Fargate Spot interruption gives a
two-minute warning and the same SIGTERM). On SIGTERM (or SIGINT) the runner:

1. lets the stage running now finish if it can within the **grace period**
   (``grace_seconds``; default ``$ELEANOR_GRACE_SECONDS``, else
   ``$ELEANOR_STOP_TIMEOUT_SECONDS - $ELEANOR_GRACE_MARGIN_SECONDS``, else 25 s) and
   starts no further stage; the engine checkpoints that stage and releases the lease
   (a second signal ends the grace period at once). A **records stage**
   (``ctx.records(...)``) stops sooner, at its next batch boundary: the batch in
   flight finishes, the engine checkpoints the cursor and counts (one conditional
   write), the stage stays RUNNING with its progress ``suspended`` and the lease is
   released; the next container resumes the same attempt at that cursor;
2. otherwise, when the grace period runs out mid-stage (mid-batch), records the attempt
   as *interrupted* (RETRY, or ERROR when its attempt budget is spent, with a history
   entry ``interrupted: ...``), releases the lease and exits at once. A records stage
   keeps what its last checkpoint committed: the next attempt starts from that cursor
   and offers again only the batches since it.

Either way the next container resumes immediately: COMPLETE stages are skipped, the
interrupted stage is retried, a suspended one resumed. Exit codes (documented, stable):

=====  ===================  ===========================================================
code   name                 meaning
=====  ===================  ===========================================================
0      EXIT_OK              the task is COMPLETE
1      EXIT_FAILED          the task ended in ERROR or CANCELED, or the runner failed
3      EXIT_WORK_LEFT       stopped by ``time_budget`` with work left (as the CLI's 3)
75     EXIT_STOPPED         SIGTERM: stopped between stages, or a records stage at a
                            batch boundary (mid-stage, checkpointed, suspended), lease
                            released, work left
76     EXIT_INTERRUPTED     SIGTERM: grace ran out mid-stage; attempt recorded as
                            interrupted, lease released, work left
=====  ===================  ===========================================================

75 is ``EX_TEMPFAIL`` ("try again later"): both 75 and 76 mean *run the same task
again*, e.g. from a Step Functions ``ecs:runTask.sync`` retry on the exit code.

How: the engine runs on a worker thread. On the first signal the main thread calls
:meth:`TaskEngine.request_stop`: the engine starts no further attempt, releases the
lease and returns a RUNNING summary (exit 75); a records stage sees the request before
its next batch and suspends there (``stage_suspended``). When the grace period runs
out (or a second signal arrives) it calls :meth:`TaskEngine.interrupt`, which writes
the interrupted attempt as a compare-and-swap against the attempt's RUNNING record,
emits ``stage_interrupted`` and releases the lease (exit 76); the stage's own outcome
is then never written. If the stage's outcome landed first, the interruption is refused and the
engine stops at that boundary (exit 75, or 0 if that was the last stage).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

from eleanor_cloud.aws.env import (
    DEFAULT_GRACE_MARGIN,
    DEFAULT_GRACE_SECONDS,
    GRACE_ENV,
    GRACE_MARGIN_ENV,
    STOP_TIMEOUT_ENV,
    grace_from_env,
)
from eleanor_cloud.aws.outcome import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_STOPPED,
    EXIT_WORK_LEFT,
    RunOutcome,
    exit_code_of,
)
from eleanor_cloud.clock import Clock, parse_ts, utc_now
from eleanor_cloud.errors import EleanorError, InvalidState, LeaseHeld
from eleanor_cloud.store.state_store import StateStore

if TYPE_CHECKING:
    from eleanor_cloud.engine import EngineEvent, TaskEngine
    from eleanor_cloud.engine.lease_watch import LeaseWatch

__all__ = [
    "DEFAULT_GRACE_SECONDS",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_STOPPED",
    "EXIT_WORK_LEFT",
    "GRACE_ENV",
    "GRACE_MARGIN_ENV",
    "STOP_TIMEOUT_ENV",
    "ContainerRunner",
    "RunOutcome",
    "grace_from_env",
    "run_container",
]

_log = logging.getLogger("eleanor_cloud.aws")

# How often the main thread looks at the signal flag: the signal handler itself only
# stores the signal number (taking locks in a handler can deadlock the main thread).
_POLL = 0.05
# After a refused interruption (the stage's outcome landed first) the engine only has
# to reach the boundary and release the lease; half the default margin bounds the wait.
_SETTLE = DEFAULT_GRACE_MARGIN / 2


def _watched(held: LeaseHeld, waited: float) -> LeaseWatch | None:
    """``held``'s watch plus ``waited`` seconds, or ``None`` if it carries none."""
    # Imported here: importing this module must not load the engine.
    from eleanor_cloud.engine.lease_watch import LeaseWatch

    watch = held.watch
    return watch.plus(waited) if isinstance(watch, LeaseWatch) else None


class ContainerRunner:
    """Run ``engine`` to the end, or until SIGTERM/SIGINT, as described in the module.

    The engine itself writes the interrupted attempt and releases the lease.
    ``grace_seconds`` defaults to :func:`grace_from_env`. ``time_budget`` bounds the
    run like ``TaskEngine.run``.
    ``lease_wait`` seconds are spent waiting for a lease another holder still has (a
    container killed without releasing it) before giving up with :data:`EXIT_FAILED`.
    A dead holder's lease is taken over once it has stood still for the engine's TTL
    plus its clock-skew tolerance, measured from the first look: the runner carries
    the engine's watch from one attempt to the next (``LeaseWatch.plus`` the time it
    waited, on this process's monotonic clock), so that is all it waits. The default
    is twice that, room for request latency and a holder that releases late.
    Signal handlers are installed only when :meth:`run` is called on the main thread.
    """

    def __init__(
        self,
        engine: TaskEngine[Any],
        *,
        grace_seconds: float | None = None,
        time_budget: float | None = None,
        lease_wait: float | None = None,
        signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT),
        clock: Clock = utc_now,
    ) -> None:
        grace = grace_from_env() if grace_seconds is None else float(grace_seconds)
        if grace < 0:
            raise InvalidState(f"grace_seconds must be >= 0, got {grace}")
        if time_budget is not None and time_budget <= 0:
            raise InvalidState(f"time_budget must be > 0 seconds, got {time_budget}")
        self.engine = engine
        self.grace_seconds = grace
        self.time_budget = time_budget
        options = engine.lease_options
        self._skew = options.clock_skew_tolerance
        takeover = options.ttl + options.clock_skew_tolerance
        self.lease_wait = 2 * takeover if lease_wait is None else float(lease_wait)
        self.signals = signals
        self._clock = clock
        self._signal: int | None = None  # written by the signal handler only
        self._signals = 0
        self._stop = threading.Event()  # set by the main thread on a signal
        self._finished = threading.Event()
        self._summary: Any = None  # what _run_once returned (a TaskSummary here)
        self._ran = False
        self._error: BaseException | None = None
        self._current: str | None = None  # the stage running, for the log only
        self._suspended: EngineEvent | None = None  # a records stage stopped at a batch
        self._lock = threading.Lock()
        # Imported here: importing this module must not load the engine.
        from eleanor_cloud.engine.events import chain_on_event

        chain_on_event(engine, self._on_event)

    # -- engine observation (for the log: which stage runs, where one suspended) -------

    def _on_event(self, event: EngineEvent) -> None:
        with self._lock:
            if event.kind in ("stage_started", "stage_resumed") and event.stage_name:
                self._current = event.stage_name
            elif event.kind == "stage_suspended":
                self._current, self._suspended = None, event
            elif event.kind in (
                "stage_completed",
                "stage_retry",
                "stage_failed",
                "stage_canceled",
                "stage_interrupted",
            ):
                self._current = None

    def _work(self) -> None:
        deadline = time.monotonic() + self.time_budget if self.time_budget is not None else None
        lease_deadline = time.monotonic() + self.lease_wait
        watch: LeaseWatch | None = None  # how long the held lease has stood still
        try:
            while True:
                budget = None if deadline is None else max(1e-3, deadline - time.monotonic())
                try:
                    self._summary, self._ran = self._run_once(budget, watch), True
                    return
                except LeaseHeld as held:
                    # A container killed without releasing (SIGKILL, host loss) leaves
                    # a live lease for up to its TTL: wait for it, but stay stoppable.
                    delay = self._lease_delay(held)
                    if time.monotonic() + delay > lease_deadline or self._stop.is_set():
                        raise
                    _log.info(
                        "task %s: lease held by %s; retrying in %.1fs",
                        self.engine.task_id,
                        held.holder,
                        delay,
                    )
                    slept_from = time.monotonic()
                    if self._stop.wait(delay):
                        # Stopped before anything ran: nothing to record or release.
                        self._summary, self._ran = self._unstarted(), True
                        return
                    # The next attempt continues this watch rather than starting over:
                    # both durations are on this process's clock.
                    watch = _watched(held, time.monotonic() - slept_from)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self._error = exc
        finally:
            self._finished.set()

    # -- what runs, and what its end means (a subclass runs a shard instead) -----------

    def _run_once(self, budget: float | None, watch: LeaseWatch | None) -> Any:
        """One run of the work: here the task, from where it stands."""
        return self.engine.run(time_budget=budget, lease_watch=watch)

    def _unstarted(self) -> Any:
        """The result when stopped while waiting for the lease (nothing ran)."""
        return self.engine.status()

    def _outcome(self, result: Any, signum: int | None) -> RunOutcome:
        """The exit code and message of a run that returned ``result``."""
        with self._lock:
            suspended = self._suspended
        code, message = exit_code_of(result, signum, suspended)
        return RunOutcome(code, result, signum, message=message)

    def _stopping(self) -> str:
        """What a stop lets finish, for the log."""
        with self._lock:
            current = self._current
        if current:
            return f"letting stage {current!r} finish (a records stage: its batch)"
        return "stopping"

    def _lease_delay(self, held: LeaseHeld) -> float:
        """Until the watch would be complete (the next attempt then takes a dead lease
        over at its first read), or without a watch until the lease's expiry."""
        watch = _watched(held, 0.0)
        if watch is not None and held.needed_seconds is not None:
            until = float(held.needed_seconds) - watch.seconds
        elif held.expires_at is not None:
            until = (parse_ts(held.expires_at) - self._clock()).total_seconds() + self._skew
        else:
            return 1.0
        return min(max(0.05, until), max(0.05, self.lease_wait))

    # -- signals (main thread) ---------------------------------------------------------

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self._signal is None:
            self._signal = signum
        self._signals += 1  # a second signal (Ctrl-C twice) ends the grace period now

    def run(self) -> RunOutcome:
        """Run the task; return the outcome (call :meth:`RunOutcome.exit` to exit)."""
        installed: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for signum in self.signals:
                installed[signum] = signal.signal(signum, self._handle)
        try:
            return self._supervise()
        finally:
            for signum, previous in installed.items():
                signal.signal(signum, previous)

    def _supervise(self) -> RunOutcome:
        worker = threading.Thread(
            target=self._work, daemon=True, name=f"eleanor-run-{self.engine.task_id}"
        )
        worker.start()
        stop_by: float | None = None
        while not self._finished.wait(_POLL):
            if self._signal is not None and stop_by is None:
                stop_by = time.monotonic() + self.grace_seconds
                self._stop.set()
                name = signal.Signals(self._signal).name
                self.engine.request_stop(
                    f"{name} received: stopped at a stage or batch boundary (container "
                    "stop or Spot interruption)"
                )
                _log.warning(
                    "task %s: %s received: %s; exiting within %.1fs",
                    self.engine.task_id,
                    name,
                    self._stopping(),
                    self.grace_seconds,
                )
            if stop_by is not None and (time.monotonic() >= stop_by or self._signals > 1):
                return self._interrupt()
        return self._finish()

    def _finish(self) -> RunOutcome:
        error, signum = self._error, self._signal
        if error is not None:
            raise error  # LeaseHeld after lease_wait, AccessDenied, a bug: the caller's
        if not self._ran:  # pragma: no cover - the worker sets one or the other
            raise RuntimeError("the engine run ended without a summary")
        outcome = self._outcome(self._summary, signum)
        if outcome.exit_code == EXIT_STOPPED:
            _log.warning("task %s: %s", self.engine.task_id, outcome.message)
        return outcome

    # -- interruption (main thread, the stage still running on the worker) -------------

    def _interrupt(self) -> RunOutcome:
        signum = self._signal
        name = signal.Signals(signum).name if signum is not None else "stop"
        if self._signals > 1:
            reason = (
                f"{name} received; a second signal ended the {self.grace_seconds:g}s "
                "grace period before the stage finished"
            )
        else:
            reason = (
                f"{name} received; the stage did not finish within the "
                f"{self.grace_seconds:g}s grace period (container stop or Spot "
                "interruption)"
            )
        recorded = False
        try:
            recorded = self.engine.interrupt(reason)
        except EleanorError as exc:
            # The lease then simply expires; the next holder records the attempt.
            _log.error("task %s: could not record the interruption: %s", self.engine.task_id, exc)
        if not recorded and self._finished.wait(_SETTLE):
            # Nothing was running, or the stage's outcome landed first: the engine has
            # stopped at that boundary (the stop was requested) and released the lease.
            return self._finish()
        _log.warning(
            "task %s: %s; %s",
            self.engine.task_id,
            reason,
            "attempt recorded as interrupted" if recorded else "nothing recorded",
        )
        return RunOutcome(
            EXIT_INTERRUPTED,
            None,
            signum,
            interrupted=True,
            recorded_interruption=recorded,
            message=reason,
        )


def run_container(
    build: Callable[[str, StateStore], TaskEngine[Any]],
    task_id: str,
    store: StateStore,
    *,
    grace_seconds: float | None = None,
    time_budget: float | None = None,
    exit: bool = True,
) -> RunOutcome:
    """Build the engine with ``build(task_id, store)`` (the CLI's factory signature), run
    it under :class:`ContainerRunner`, and exit the process with the outcome's code
    (``exit=False`` returns the outcome instead; an interruption always exits).
    """
    engine = build(task_id, store)
    outcome = ContainerRunner(engine, grace_seconds=grace_seconds, time_budget=time_budget).run()
    if exit or outcome.interrupted:
        outcome.exit()
    return outcome
