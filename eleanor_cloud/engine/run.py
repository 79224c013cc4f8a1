"""One run of a task: bind, open (lease, load, fence), the loop, and how it ends.

Open: bind if needed -> take the lease -> load the states (skipped right after a fresh
bind: nothing can exist yet) -> fence if the lease was taken over. The loop: for each
stage not COMPLETE, while the budget allows, wait out the backoff (unless the deadline
or a stop request says no), then one attempt (:mod:`.attempt`). An uninterrupted
N-stage run on a fresh task costs 2N + 3 requests: manifest, lease, two writes per
stage, release.
"""

from __future__ import annotations

import time
from typing import Any

from eleanor_cloud.clock import format_ts
from eleanor_cloud.engine import transitions as tr
from eleanor_cloud.engine.attempt import AttemptControl, interrupted_now, remaining, run_attempt
from eleanor_cloud.engine.checkpoint import Checkpointer, RunState
from eleanor_cloud.engine.events import EventKind
from eleanor_cloud.engine.fence import open_progress, open_records
from eleanor_cloud.engine.join import is_sharded, task_step
from eleanor_cloud.engine.lease import LeaseManager
from eleanor_cloud.engine.lease_watch import LeaseWatch
from eleanor_cloud.engine.saga import compensate
from eleanor_cloud.engine.summary import TaskSummary, summarize
from eleanor_cloud.errors import AlreadyExists, NotFound, TaskBindingError
from eleanor_cloud.models import StageStatus
from eleanor_cloud.store.records import Record, TaskManifest

__all__ = ["Runner"]


class Runner:
    """The I/O around the transitions, for one engine (runs happen one at a time)."""

    def __init__(self, cp: Checkpointer, control: AttemptControl) -> None:
        self.cp = cp
        self.spec = cp.spec
        self.control = control
        self.manifest: TaskManifest | None = None
        self.fresh = False  # bound by this engine just now: nobody can have run it
        self.waiting_on: str | None = None  # a sharded stage whose shards must run

    # -- bind and open -----------------------------------------------------------------

    def bind(self) -> TaskManifest:
        spec = self.spec
        manifest = TaskManifest(
            task_id=spec.task_id,
            stages=spec.stage_names,
            state_class=spec.state_class_path,
            created_at=format_ts(spec.clock()),
            metadata=spec.metadata,
        )
        try:
            self.cp.store.create_manifest(manifest)
        except AlreadyExists as exc:
            current = exc.current
            stored = (
                current.value
                if isinstance(current, Record)
                else self.cp.store.load_manifest(spec.task_id)
            )
            self.check_manifest(stored)
            self.manifest, self.fresh = stored, False
            return stored
        self.cp.index.created()
        self.cp.reporter.log().info(
            "task %s: bound with stages %s", spec.task_id, list(spec.stage_names)
        )
        self.manifest, self.fresh = manifest, True
        return manifest

    def check_manifest(self, stored: TaskManifest) -> None:
        spec = self.spec
        mine = (spec.stage_names, spec.state_class_path)
        theirs = (tuple(stored.stages), stored.state_class)
        if mine != theirs:
            raise TaskBindingError(
                f"task {spec.task_id!r} exists with stages {list(theirs[0])} and state class "
                f"{theirs[1]}; this engine has stages {list(mine[0])} and state class "
                f"{mine[1]}",
                key=self.cp.store.manifest_key(spec.task_id),
                operation="bind",
            )

    def open(self, end: Any, lease_watch: LeaseWatch | None = None) -> RunState:
        """Bind if needed, take the lease, load (and fence) the states."""
        spec, store, reporter = self.spec, self.cp.store, self.cp.reporter
        if self.manifest is None:
            self.bind()
        fresh, self.fresh = self.fresh, False
        options = spec.lease
        lease = LeaseManager(
            store,
            spec.task_id,
            holder=spec.holder,
            ttl=options.ttl,
            clock=spec.clock,
            sleep=spec.sleep,
            clock_skew_tolerance=options.clock_skew_tolerance,
            wait=options.wait,
            renew_interval=options.renew_interval,
            on_lost=lambda why: reporter.emit("lease_lost", message=why),
            prior_watch=lease_watch,
        )
        try:
            left = None if end is None else (end - spec.clock()).total_seconds()
            lease.acquire(probably_new=fresh, time_left=left)
            reporter.emit(
                "lease_takeover" if lease.takeover else "lease_acquired",
                message=f"epoch {lease.epoch}",
            )
            records, began = open_records(
                store, lease, spec.task_id, spec.stage_names, spec.state_class, fresh=fresh
            )
            progress = open_progress(store, lease, spec.task_id, records)
            states = {
                n: r.value if r is not None else spec.fresh_state(n) for n, r in records.items()
            }
            lease.start_renewing()
        except BaseException:
            lease.release()
            raise
        floor = lease.lease.floor if lease.lease is not None else 0
        return RunState(lease, states, records, began, end, progress=progress, floor=floor)

    def already_complete(self) -> TaskSummary | None:
        """The summary of a bound task that already completed, read without the lease.

        A repeated call (a retried Lambda event, an idempotent re-run) should cost reads,
        not lease writes. Stages complete in order and nothing but a rollback (which
        resets the last stage first) un-completes one, so the final stage decides with
        one GET; the manifest names the other stages, so no LIST is needed to read them.
        Anything short of all-COMPLETE goes the normal way, under the lease.
        """
        spec, store = self.spec, self.cp.store
        if self.manifest is None:
            self.bind()
        if self.fresh:
            return None
        last = spec.stage_names[-1]
        final = store.load_stage_records(spec.task_id, (last,), spec.state_class).get(last)
        if final is None or final.value.status is not StageStatus.COMPLETE:
            return None
        others = store.load_stage_records(spec.task_id, spec.stage_names[:-1], spec.state_class)
        states = {n: r.value for n, r in others.items()}
        states[last] = final.value
        summary = summarize(spec.task_id, spec.stage_names, states)
        if summary.status is not StageStatus.COMPLETE:
            return None
        self.cp.reporter.emit(
            "task_completed", status=StageStatus.COMPLETE, message="already complete"
        )
        return summary

    # -- the loop ----------------------------------------------------------------------

    def advance(self, run: RunState) -> TaskSummary:
        spec, states = self.spec, run.states
        for index, stage in enumerate(spec.stages):
            name = spec.stage_names[index]
            state = states[name]
            if state.status is StageStatus.COMPLETE:
                continue
            if state.status is StageStatus.CANCELED:
                return self.canceled()
            if state.status is StageStatus.ERROR:
                return self.failed(run, index, already=True)
            if is_sharded(stage):
                step = task_step(self.cp, run, stage, name)
                if step == "complete":
                    continue
                if step == "error":
                    return self.failed(run, index)
                self.waiting_on = name
                return self._paused(
                    run,
                    name,
                    f"stage {name!r} is fanned out: waiting for its shards "
                    "(run them with run_shard, or run(workers=N)); run again to join",
                )
            resume = state.status is StageStatus.RUNNING and self.suspended_cleanly(run, name)
            if (
                state.status is StageStatus.RUNNING
                and not resume
                and interrupted_now(self.cp, run, name) is StageStatus.ERROR
            ):
                return self.failed(run, index)
            while True:
                state = states[name]
                if not tr.may_attempt(spec.retry_policy, spec.max_attempts, state, states.values()):
                    self.strand(run, name)
                    return self.failed(run, index)
                expected = stage.expected_duration or 0.0
                delay = 0.0
                if state.status is StageStatus.RETRY:
                    delay = spec.backoff.delay(max(1, tr.current_run(state)))
                left = remaining(spec.clock, run)
                if left is not None and left < delay + expected:
                    return self.pause(run, name, expected, delay, left)
                if self.control.stop_reason is not None:
                    return self.stopped(run, name)
                if delay > 0:
                    self.cp.reporter.log(name).info(
                        "task %s stage %s: retrying in %.2fs", spec.task_id, name, delay
                    )
                    self.backoff(delay)
                outcome = run_attempt(self.cp, self.control, run, stage, name, resume=resume)
                resume = False
                if outcome is None:  # a stop was requested after the check above
                    return self.stopped(run, name)
                if outcome is StageStatus.COMPLETE:
                    break
                if outcome is StageStatus.ERROR:
                    return self.failed(run, index)
        self.cp.reporter.log().info("task %s: complete", spec.task_id)
        self.cp.reporter.emit("task_completed", status=StageStatus.COMPLETE)
        return summarize(spec.task_id, spec.stage_names, states)

    @staticmethod
    def suspended_cleanly(run: RunState, name: str) -> bool:
        """A RUNNING records stage whose attempt stopped at a checkpoint on purpose
        (deadline, stop request): the same attempt goes on, it was not interrupted."""
        record = run.progress.get(name)
        if record is None or (run.floor > 0 and record.epoch <= run.floor):
            return False
        progress = record.value
        return bool(progress.suspended and progress.attempt == run.states[name].attempts)

    def suspended(self, run: RunState, name: str, message: str, batches: int) -> TaskSummary:
        spec = self.spec
        attempt = run.states[name].attempts
        text = f"stage {name!r} suspended at a checkpoint ({message}); run again to resume"
        self.cp.reporter.log(name).info("task %s: %s", spec.task_id, text)
        self.cp.reporter.emit(
            "stage_suspended", name, attempt, StageStatus.RUNNING, message, batches
        )
        return self._paused(run, name, text)

    def backoff(self, delay: float) -> None:
        if self.spec.sleep is time.sleep:
            # The default sleep: wait on the stop event instead, so that request_stop()
            # (a container being stopped) ends a long backoff at once.
            self.control.stop_event.wait(delay)
        else:
            self.spec.sleep(delay)

    # -- endings -----------------------------------------------------------------------

    def strand(self, run: RunState, name: str) -> None:
        """The budget is spent before this stage could start: mark it ERROR."""
        spec, state = self.spec, run.states[name]
        if state.status is StageStatus.ERROR:
            return
        self.cp.commit(run, tr.strand(state))
        message = (
            f"{spec.retry_policy.value} attempt budget of {spec.max_attempts} spent "
            f"before stage {name!r} could start"
        )
        self.cp.reporter.log(name).error("task %s stage %s: %s", spec.task_id, name, message)
        self.cp.reporter.emit("stage_failed", name, state.attempts, StageStatus.ERROR, message)

    def failed(self, run: RunState, index: int, *, already: bool = False) -> TaskSummary:
        spec = self.spec
        if not already:
            self.cp.reporter.emit("task_failed", spec.stage_names[index], status=StageStatus.ERROR)
            if spec.auto_rollback:
                compensate(self.cp, run, index)
        return summarize(spec.task_id, spec.stage_names, run.states)

    def canceled(self) -> TaskSummary:
        self.cp.reporter.emit("task_canceled", status=StageStatus.CANCELED)
        return self.status()

    def pause(
        self, run: RunState, name: str, expected: float, delay: float, left: float
    ) -> TaskSummary:
        message = (
            f"deadline: stage {name!r} needs {expected + delay:.3f}s "
            f"(expected duration {expected:.3f}s + backoff {delay:.3f}s) but "
            f"{max(left, 0.0):.3f}s remain; resume later"
        )
        return self._paused(run, name, message)

    def stopped(self, run: RunState, name: str) -> TaskSummary:
        reason = self.control.stop_reason or "stop requested"
        return self._paused(run, name, reason, before=True)

    def _paused(
        self, run: RunState, name: str, message: str, *, before: bool = False
    ) -> TaskSummary:
        spec = self.spec
        what = f"stopped before stage {name}" if before else "paused"
        self.cp.reporter.log().info("task %s: %s: %s", spec.task_id, what, message)
        self.cp.reporter.emit("task_paused", name, status=StageStatus.RUNNING, message=message)
        return summarize(
            spec.task_id,
            spec.stage_names,
            run.states,
            force_status=StageStatus.RUNNING,
            message=message,
        )

    def interrupted(self, run: RunState, stage_name: str, message: str) -> TaskSummary:
        spec = self.spec
        summary = summarize(spec.task_id, spec.stage_names, run.states, message=message)
        kind: EventKind = "task_failed" if summary.status is StageStatus.ERROR else "task_paused"
        self.cp.reporter.emit(kind, stage_name, status=summary.status, message=message)
        return summary

    def status(self) -> TaskSummary:
        """Read-only summary: one GET (manifest), one LIST, a GET per stored stage."""
        spec, store = self.spec, self.cp.store
        try:
            manifest = store.load_manifest(spec.task_id)
        except NotFound:
            return summarize(spec.task_id, spec.stage_names, {}, bound=False)
        self.check_manifest(manifest)
        records = store.load_task_records(spec.task_id, spec.state_class)
        return summarize(spec.task_id, spec.stage_names, {n: r.value for n, r in records.items()})
