"""TaskEngine: the facade over one task's run, its stop/interrupt hooks and its repairs.

Where to read on: a run starts in :meth:`.run.Runner.open`, loops in
:meth:`.run.Runner.advance`, makes one attempt in :func:`.attempt.run_attempt`, changes
a stage's status only through :mod:`.transitions`, writes only through
:class:`.checkpoint.Checkpointer`, and ends in the ``Runner``'s endings.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Generic

from eleanor_cloud.clock import Clock, utc_now
from eleanor_cloud.engine import attempt
from eleanor_cloud.engine.admin import cancel_task, retry_failed_task
from eleanor_cloud.engine.attempt import AttemptControl, Interrupted, Paused
from eleanor_cloud.engine.backoff import Backoff
from eleanor_cloud.engine.checkpoint import Canceled, Checkpointer
from eleanor_cloud.engine.events import EventHandler, Reporter
from eleanor_cloud.engine.lease_watch import LeaseWatch
from eleanor_cloud.engine.options import (
    LeaseOptions,
    TaskSpec,
    check_reason,
    default_holder,
    run_window,
)
from eleanor_cloud.engine.run import Runner
from eleanor_cloud.engine.saga import reset_stages, rollback_hook
from eleanor_cloud.engine.stage import BaseStage, StateT
from eleanor_cloud.engine.summary import TaskSummary, summarize

if TYPE_CHECKING:
    from eleanor_cloud.engine.shard_run import ShardSummary
from eleanor_cloud.errors import InvalidState, LeaseLost
from eleanor_cloud.models import RetryPolicy
from eleanor_cloud.store.records import TaskManifest
from eleanor_cloud.store.state_store import StateStore

__all__ = ["TaskEngine"]


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

    Every argument is checked here, before any I/O (:mod:`.options`). The engine keeps
    no hidden versions: each write names the record it replaces.

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
        if not isinstance(store, StateStore):
            raise InvalidState(f"store must be a StateStore, got {type(store).__name__}")
        if on_event is not None and not callable(on_event):
            raise InvalidState(f"on_event must be callable, got {on_event!r}")
        lease = LeaseOptions(lease_ttl, wait_for_lease, clock_skew_tolerance, renew_interval)
        spec = TaskSpec.build(
            task_id,
            stages,
            state_class,
            retry_policy=retry_policy,
            max_attempts=max_attempts,
            backoff=backoff,
            lease=lease,
            auto_rollback=auto_rollback,
            cancel_check_interval=cancel_check_interval,
            holder=holder or default_holder(),
            metadata=metadata,
            clock=clock,
            sleep=sleep,
        )
        self.spec = spec
        self._store = store
        self._reporter = Reporter(spec.task_id, on_event)
        self._control = AttemptControl()
        self._cp = Checkpointer(spec, store, self._reporter)
        self._runner = Runner(self._cp, self._control)

    # -- the definition, read-only -----------------------------------------------------

    @property
    def task_id(self) -> str:
        return self.spec.task_id

    @property
    def stages(self) -> list[BaseStage[StateT]]:
        return list(self.spec.stages)

    @property
    def stage_names(self) -> tuple[str, ...]:
        return self.spec.stage_names

    @property
    def state_class(self) -> type[StateT]:
        cls: type[StateT] = self.spec.state_class  # type: ignore[assignment]
        return cls

    @property
    def store(self) -> StateStore:
        """The store this engine checkpoints into (the one it was given)."""
        return self._store

    @property
    def lease_options(self) -> LeaseOptions:
        """TTL, wait, skew tolerance and renew interval, validated."""
        return self.spec.lease

    @property
    def holder(self) -> str:
        """The lease holder name this engine writes."""
        return self.spec.holder

    @property
    def on_event(self) -> EventHandler | None:
        """The event handler; assignable, e.g. to chain a printer after the user's."""
        return self._reporter.handler

    @on_event.setter
    def on_event(self, handler: EventHandler | None) -> None:
        if handler is not None and not callable(handler):
            raise InvalidState(f"on_event must be callable, got {handler!r}")
        self._reporter.handler = handler

    def __repr__(self) -> str:
        return (
            f"TaskEngine(task_id={self.task_id!r}, stages={list(self.stage_names)}, "
            f"store={self._store!r})"
        )

    # -- run ---------------------------------------------------------------------------

    def bind(self) -> TaskManifest:
        """Write the task manifest (one request), or check the stored one matches.

        Raises ``TaskBindingError`` naming both definitions if the task exists with a
        different stage list or state class.
        """
        return self._runner.bind()

    def run(
        self,
        *,
        deadline: datetime | None = None,
        time_budget: float | None = None,
        lease_watch: LeaseWatch | None = None,
        workers: int | None = None,
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

        Waiting for a lease never outlives the deadline: ``LeaseHeld.watch`` then says
        how long this run saw the lease stand still; pass it (plus the time waited
        since, ``watch.plus(seconds)``) as ``lease_watch`` to the next run, so a chain
        of short invocations can take a dead holder's lease over.
        """
        if lease_watch is not None and not isinstance(lease_watch, LeaseWatch):
            raise InvalidState(f"lease_watch must be a LeaseWatch, got {lease_watch!r}")
        if workers is not None and (
            isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
        ):
            raise InvalidState(f"workers must be an int >= 1, got {workers!r}")
        end = run_window(self.spec.clock, deadline, time_budget)
        summary = self._run_once(end, lease_watch)
        # A fanned-out stage with local workers: run its shards here, then join.
        while workers is not None and self._runner.waiting_on is not None:
            from eleanor_cloud.engine.fanout import load_plan
            from eleanor_cloud.engine.pool import run_shards

            name, self._runner.waiting_on = self._runner.waiting_on, None
            plan = load_plan(self._store, self.task_id, name)
            if plan is None or self._control.stop_reason is not None:
                break
            ran = run_shards(self, name, [s.id for s in plan.shards], workers, plan.plan_id)
            summary = self._run_once(end, None)
            if (
                self._control.stop_reason is None
                and self._runner.waiting_on == name
                and all(r["done"] for r in ran)
            ):
                # Every worker finished its shard, yet this process sees no end: the
                # store is not one that processes share (memory://, say).
                raise InvalidState(
                    f"task {self.task_id!r}: the workers' shards of {name!r} are not visible "
                    f"here; run(workers=N) needs a store that processes share, not "
                    f"{self._store.backend.description}"
                )
        stop = self._control.stop_reason
        if workers is not None and stop is not None and not summary.done:
            return dataclasses.replace(summary, message=stop)  # say why, not "waiting"
        return summary

    def _run_once(self, end: datetime | None, lease_watch: LeaseWatch | None) -> TaskSummary:
        runner = self._runner
        finished = runner.already_complete()
        if finished is not None:
            return finished
        run = runner.open(end, lease_watch)
        try:
            self._reporter.emit("task_started")
            return runner.advance(run)
        except Canceled:
            return runner.canceled()
        except Interrupted as exc:
            return runner.interrupted(run, exc.stage_name, exc.message)
        except Paused as exc:
            return runner.suspended(run, exc.stage_name, exc.message, exc.batches)
        except LeaseLost as exc:
            self._reporter.emit("lease_lost", message=str(exc))
            self._reporter.log().warning("task %s: %s", self.task_id, exc)
            raise
        finally:
            run.lease.release()

    def run_shard(
        self,
        stage_name: str,
        shard_id: str,
        *,
        deadline: datetime | None = None,
        time_budget: float | None = None,
        plan_id: str | None = None,
        holder: str | None = None,
        lease_watch: LeaseWatch | None = None,
    ) -> ShardSummary:
        """Run one shard of a fanned-out stage (on any worker; see :mod:`.fanout`).

        Takes only that shard's lease (``LeaseHeld`` if another worker runs it), resumes
        it from its records checkpoint, and runs attempts under the retry policy, per
        shard. ``NotPlanned`` if the task has not planned the stage yet; ``plan_id``
        refuses a worker meant for another plan; ``holder`` names this worker in the
        shard's lease (default: the engine's); ``lease_watch`` carries a watch of the
        shard's lease across invocations, as for :meth:`run`. Run the task again
        afterwards to join.
        """
        from eleanor_cloud.engine.shard_run import run_shard

        if stage_name not in self.stage_names:
            raise InvalidState(f"task {self.task_id!r} has no stage {stage_name!r}")
        stage = self.spec.stages[self.stage_names.index(stage_name)]
        end = run_window(self.spec.clock, deadline, time_budget)
        self._runner.bind() if self._runner.manifest is None else None
        return run_shard(
            self._cp,
            self._control,
            stage,
            stage_name,
            shard_id,
            end=end,
            plan_id=plan_id,
            holder=holder,
            lease_watch=lease_watch,
        )

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
        self._control.request_stop(check_reason(reason))

    @property
    def stop_requested(self) -> str | None:
        """The reason given to :meth:`request_stop` (or :meth:`interrupt`), else None."""
        return self._control.stop_reason

    def interrupt(self, reason: str) -> bool:
        """Record the attempt now running as interrupted and release the lease.

        For another thread (e.g. a container's stop handler once its grace period ran
        out) while ``run()`` executes a stage. Also requests a stop (see
        :meth:`request_stop`). Writes the attempt's history entry ``interrupted:
        <reason>`` with status RETRY, or ERROR when its attempt budget is spent, as a
        compare-and-swap against the attempt's RUNNING record; emits
        ``stage_interrupted``; releases the lease.

        Returns True when the interrupted record was written. Returns False when no
        attempt was running or the stage's outcome was written first (exactly one of
        the two lands); ``run()`` then stops at its next attempt. After True, the
        stage's own outcome is never written: when the stage's code returns (or
        raises), ``run()`` returns the summary with the interrupted status, and
        ``ctx.cancelled`` is true meanwhile. Waits for the RUNNING write of an attempt
        that is just starting, so call it from another thread than the one running
        ``run()``. Store errors other than the refusal (e.g. ``Unavailable``) are
        raised; the interruption was then not recorded by this call.
        """
        return attempt.interrupt(self._cp, self._control, check_reason(reason))

    # -- other operations --------------------------------------------------------------

    def status(self) -> TaskSummary:
        """Read-only summary: one GET (manifest), one LIST, a GET per stored stage.

        An unbound task reads as UNBOUND; another definition raises TaskBindingError.
        """
        return self._runner.status()

    def cancel(self) -> TaskSummary:
        """Cancel the task (see :func:`eleanor_cloud.engine.cancel_task`)."""
        return cancel_task(self._store, self.task_id, self.state_class)

    def retry_failed(self) -> TaskSummary:
        """Redrive ERROR stages with a fresh budget; then call :meth:`run` to resume."""
        return retry_failed_task(self._store, self.task_id, self.state_class)

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
        run = self._runner.open(None)
        try:
            reset_stages(
                self._store,
                run,
                self.task_id,
                self.stage_names,
                to_stage,
                clock=self.spec.clock,
                before_reset=rollback_hook(self._cp, run),
            )
        finally:
            run.lease.release()
        return summarize(self.task_id, self.stage_names, run.states)
