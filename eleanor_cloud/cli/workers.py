"""``run --workers N``: a fanned-out stage's shards on N local worker processes.

``TaskEngine.run(workers=N)`` plans the stage (or finds its plan), forks N workers that
run the shards under their own leases (:mod:`eleanor_cloud.engine.pool`), and joins
them once every shard ended; the task then goes on to its next stage. Meanwhile a
:class:`~eleanor_cloud.cli.shard_watch.ShardWatch` shows each shard's progress, polled
from the store.

Ctrl-C (SIGINT, which a terminal sends to the whole process group) or SIGTERM: this
process asks its engine to stop and passes SIGINT on to the workers (a SIGTERM or a
``kill -INT`` reaches this process only); each worker's records run finishes its batch,
checkpoints it, releases its shard and exits; the run then stops with work left, exit
75 (as ``run`` without workers), and the next ``run`` resumes every shard from its
checkpoint. A second signal exits at once (130): the workers are terminated mid-batch,
their shards keep their last checkpoints, and their leases must expire (the engine's
``lease_ttl``) before another run takes them over.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

import click

from eleanor_cloud.cli.common import echo_err, fail

if TYPE_CHECKING:
    from eleanor_cloud.cli.common import CliContext
    from eleanor_cloud.cli.output import Output, Progress
    from eleanor_cloud.engine import EngineEvent, TaskEngine, TaskSummary

__all__ = ["run_with_workers", "run_workers", "sharded_stages"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def sharded_stages(engine: TaskEngine[Any]) -> list[str]:
    """The names of the engine's stages that fan out (define ``plan()``)."""
    from eleanor_cloud.engine.join import is_sharded

    return [stage.name for stage in engine.stages if is_sharded(stage)]


class _Stopper:
    """The signal handlers of this process while its workers run (main thread only)."""

    def __init__(self, engine: TaskEngine[Any], say: Callable[[str], None]) -> None:
        self.engine, self.say = engine, say
        self.signal: str | None = None  # the first signal's name
        self._count = 0
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for signum in _SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        _stoppers.append(self)
        _register_fork_hooks()

    def restore(self) -> None:
        if self in _stoppers:
            _stoppers.remove(self)
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self._count += 1
        if self._count > 1:
            raise KeyboardInterrupt  # exit now (130): the pool terminates its workers
        self.signal = signal.Signals(signum).name
        # The engine's stop request is what the pool's workers do on SIGINT too: their
        # records runs stop at the next batch boundary, checkpointed.
        self.engine.request_stop(f"{self.signal} received: stopped at a batch boundary")
        import multiprocessing

        for child in multiprocessing.active_children():
            if child.pid is not None:
                with contextlib.suppress(ProcessLookupError):  # it just ended
                    os.kill(child.pid, signal.SIGINT)
        self.say(
            f"{self.signal} received: the workers finish their batch, checkpoint and stop "
            "(again to exit at once)"
        )

    def in_child(self) -> None:
        """In a forked worker: SIGINT asks the worker's engine to stop (as the pool's
        initializer will), SIGTERM is what it was before this command (the pool's
        ``terminate()`` relies on it)."""
        engine = self.engine
        signal.signal(signal.SIGINT, lambda *_: engine.request_stop("interrupted (SIGINT)"))
        signal.signal(signal.SIGTERM, self._previous.get(signal.SIGTERM, signal.SIG_DFL))


_stoppers: list[_Stopper] = []
_registered = False


def _in_child() -> None:
    for stopper in _stoppers:
        stopper.in_child()
    _stoppers.clear()


def _register_fork_hooks() -> None:
    global _registered  # noqa: PLW0603 - once per process: hooks cannot be removed
    if not _registered:
        os.register_at_fork(after_in_child=_in_child)
        _registered = True


def run_workers(
    engine: TaskEngine[Any],
    workers: int,
    time_budget: float | None,
    progress: Progress,
    printer: Callable[[EngineEvent], None],
    *,
    watch_shards: bool,
) -> tuple[TaskSummary, str | None]:
    """Run the task with ``workers`` local workers for its fanned-out stages; return its
    summary and the name of the signal that stopped it (``None``: not stopped).

    ``printer`` shows the run's events (this process's only: a forked worker's copy of
    the handler stays quiet); ``watch_shards`` polls and shows the shards' progress.
    """
    import threading

    from eleanor_cloud.cli.shard_watch import ShardWatch
    from eleanor_cloud.engine.events import chain_on_event

    parent = os.getpid()
    watch = None
    if watch_shards:
        watch = ShardWatch(engine.store, engine.task_id, sharded_stages(engine), workers, progress)

    def on_event(event: EngineEvent) -> None:
        # "task_paused" is what run() says between its steps (planned, waiting for the
        # shards), not the run's end: the report after the run says where it stopped.
        if os.getpid() != parent or event.kind == "task_paused":
            return
        if watch is not None:
            watch.on_event(event)
        printer(event)

    chain_on_event(engine, on_event)
    stopper = _Stopper(engine, watch.say if watch is not None else lambda _text: None)
    handled = threading.current_thread() is threading.main_thread()
    if handled:
        stopper.install()
    progress.start()
    try:
        if watch is not None:
            watch.start()
        try:
            summary = engine.run(workers=workers, time_budget=time_budget)
        finally:
            if watch is not None:
                watch.stop()
    finally:
        progress.stop()
        if handled:
            stopper.restore()
    return summary, stopper.signal


def run_with_workers(
    out: Output, state: CliContext, engine: Any, workers: int, time_budget: float | None
) -> NoReturn:
    """``run --workers N`` (:mod:`.workers`): exit 75 when a signal stopped it."""
    from eleanor_cloud.cli.run_report import event_printer, report
    from eleanor_cloud.engine import TaskEngine

    if not isinstance(engine, TaskEngine):
        fail(f"--workers needs a TaskEngine, the factory returned {type(engine).__name__}")
    from eleanor_cloud.errors import LeaseHeld

    progress = out.progress(auto_refresh=False)  # this process forks: see shard_watch
    try:
        summary, stopped = run_workers(
            engine,
            workers,
            time_budget,
            progress,
            event_printer(progress),
            watch_shards=not out.json_mode,
        )
    except LeaseHeld as exc:
        # A shard's lease says "task ... is leased" too: say where to look.
        fail(
            f"{exc} (the task's lease, or a shard's held by a live worker: 'eleanor-cloud "
            f"status {engine.task_id} --shards' shows their holders; the other shards ran)"
        )
    if stopped is not None and not summary.done:
        echo_err(
            f"eleanor-cloud: {stopped} received: the workers checkpointed their shards and "
            "stopped, leases released: run again to resume"
        )
    why = f"{stopped} received" if stopped is not None else None
    code = report(
        out, state, engine.task_id, "run", summary, with_shards=not summary.done, stopped=why
    )
    raise click.exceptions.Exit(code)
