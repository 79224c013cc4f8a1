"""How far a fanned-out stage's shards are, while ``run --workers N`` runs them.

The workers are forked processes; this one learns how far they are only from the store,
like any observer: a thread polls every :data:`POLL_SECONDS` and draws a bar per shard
on a terminal, or prints one line per event otherwise (a shard started or resumed, each
quarter of its records, suspended, ended). What a poll costs while the shards run:
1 LIST of ``done/``, 1 GET of ``progress.json`` per shard of the *window* (the first
``2 x workers`` shards in plan order without a ``done/`` marker: the pool hands the
shards out in that order, so the running ones are among them), and once per shard the
GET of its ``done/`` marker. Besides: the plan (1 GET) when the stage is first seen,
and before the run the states of the sharded stages (1 GET each), to find one that a
previous run already fanned out.

A fork while another thread is inside a request or a write to the terminal can leave
the child holding a lock nobody will release. So the thread polls and draws only under
``lock``, which a fork hook takes before every fork of this process and gives back after
(in the child too, where the watch is then dead: only the parent draws).
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eleanor_cloud.cli.output import RichProgress, status_style
from eleanor_cloud.cli.records_view import ProgressView
from eleanor_cloud.engine.anystate import AnyStageState
from eleanor_cloud.engine.fanout import Done, Plan, list_done, load_plan, read_done
from eleanor_cloud.engine.progress import Progress as RecordsProgress
from eleanor_cloud.models import StageStatus
from eleanor_cloud.store import documents

if TYPE_CHECKING:
    from eleanor_cloud.cli.output import Progress
    from eleanor_cloud.engine import EngineEvent
    from eleanor_cloud.store.state_store import StateStore

__all__ = ["MAX_BARS", "POLL_SECONDS", "ShardWatch"]

POLL_SECONDS = 0.5
MAX_BARS = 12  # shard bars on a terminal at once: the finished ones make room
_ENDS = ("stage_completed", "stage_failed", "stage_retry", "stage_canceled")


@dataclass
class _Seen:
    """What the display last showed of one shard."""

    attempt: int | None = None
    done: int = 0
    total: int | None = None
    quarter: int = 0
    suspended: bool = False


def _counts(view: ProgressView) -> tuple[int, int | None]:
    p = view.progress
    total = view.total if view.total is not None else (p.offered if p.exhausted else None)
    return view.done, total


class ShardWatch:
    """Polls the shards of the sharded stage the run is at and shows them on ``progress``.

    ``start()`` before the engine runs, ``on_event`` for each of the run's events (in
    this process), ``stop()`` after it returned: a last poll, so the display ends where
    the shards did.
    """

    def __init__(
        self,
        store: StateStore,
        task_id: str,
        sharded: list[str],
        workers: int,
        progress: Progress,
        *,
        interval: float = POLL_SECONDS,
    ) -> None:
        self.store, self.task_id, self.sharded = store, task_id, sharded
        self.workers, self.progress, self.interval = workers, progress, interval
        self.rich = progress if isinstance(progress, RichProgress) else None
        self.lock = threading.Lock()  # held while polling or drawing; and across a fork
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        self._said: list[str] = []  # lines from a signal handler, for the next poll
        self._dead = False
        self._failed = False
        self._early = False  # polling before the run: what is suspended was left so
        self._reset(None)

    def _reset(self, stage: str | None, *, before: bool = False) -> None:
        self._stage = stage
        self._before = before  # fanned out by an earlier run: its ended shards are old
        self._plan: Plan | None = None
        self._ended: dict[str, Done] = {}
        self._seen: dict[str, _Seen] = {}
        self._bars: list[str] = []  # shard bar keys, oldest first

    # -- the run's side ----------------------------------------------------------------

    def start(self) -> None:
        """Find a stage a previous run fanned out, then poll on a thread."""
        records = self.store.load_stage_records(self.task_id, self.sharded, AnyStageState)
        for name in (n for n in self.sharded if n in records):
            if records[name].value.status is StageStatus.RUNNING:
                self._reset(name, before=True)
                self._early = True
                self.tick()  # here, before any worker: what ended so far is old
                self._early = False
                break
        _watches.append(self)
        _register_fork_hooks()
        self._thread = threading.Thread(target=self._loop, name="eleanor-shards", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._halt.set()
        if self._thread is not None:
            self._thread.join()
        if self in _watches:
            _watches.remove(self)
        self.tick()

    def say(self, text: str) -> None:
        """Print ``text`` at the next poll (safe from a signal handler: no lock taken)."""
        self._said.append(text)

    def on_event(self, event: EngineEvent) -> None:
        """Follow the run: a sharded stage started is the one to watch; when it ends,
        show its shards' last state before the stage's own line."""
        name = event.stage_name
        if event.kind == "stage_started" and name in self.sharded:
            with self.lock:
                self._reset(name)
        elif event.kind in _ENDS and name is not None and name == self._stage:
            self.tick()
            with self.lock:
                self._reset(None)

    def _loop(self) -> None:
        while not self._halt.wait(self.interval):
            self.tick()

    def tick(self) -> None:
        with self.lock:
            if self._dead:
                return
            while self._said:
                self.progress.note(self._said.pop(0), style="yellow")
            try:
                self._poll()
            except Exception as exc:  # noqa: BLE001 - a display never stops the run
                if not self._failed:
                    self._failed = True
                    self.progress.note(f"shard display: cannot read the store: {exc}")
            if self.rich is not None:
                self.rich.refresh()

    # -- one poll ----------------------------------------------------------------------

    def _poll(self) -> None:
        stage, store, task = self._stage, self.store, self.task_id
        if stage is None:
            return
        first = self._plan is None
        if self._plan is None:
            self._plan = load_plan(store, task, stage)
            if self._plan is None:
                return
        plan = self._plan
        ids = [s.id for s in plan.shards]
        if first:
            self._line(
                f"[{stage}] fanned out over {len(ids):,} shards (plan {plan.plan_id[:8]}), "
                f"{min(self.workers, len(ids))} at a time"
            )
        ended = set(list_done(store, task, stage))
        new = [sid for sid in ids if sid in ended and sid not in self._ended]
        old = first and self._before
        for sid in new:
            self._ended[sid] = read_done(store, task, stage, sid)
            if old:
                self._bar_end(stage, sid)
            else:
                self._show_end(stage, sid, len(ids))
        if old and new:
            self._line(f"[{stage}] {len(new):,} of {len(ids):,} shards ended before this run")
        window = [sid for sid in ids if sid not in self._ended][: 2 * self.workers]
        for sid in window:
            record = documents.load_progress(store, task, stage, RecordsProgress, shard=sid)
            if record is not None:
                self._show_progress(stage, sid, ProgressView(record))
        self._show_stage(stage, ids)

    def _line(self, text: str) -> None:
        if self.rich is None:
            self.progress.note(text)

    def _show_progress(self, stage: str, sid: str, view: ProgressView) -> None:
        seen = self._seen.setdefault(sid, _Seen())
        done, total = _counts(view)
        p, key = view.progress, f"{stage}/{sid}"
        at = f"{done:,}/{'?' if total is None else f'{total:,}'} records"
        if seen.attempt != p.attempt:  # first seen, or a new attempt
            log = p.attempts[-1] if p.attempts and p.attempts[-1].attempt == p.attempt else None
            if p.suspended:
                by = " by an earlier run" if self._early else ""
                self._line(f"[{key}] attempt {p.attempt}: suspended{by} at {at}")
            elif log is not None and log.slices > 1:
                self._line(f"[{key}] attempt {p.attempt}: resumed at {at}")
            else:
                self._line(f"[{key}] attempt {p.attempt}: started" + (f", {at}" if done else ""))
        elif p.suspended and not seen.suspended:
            self._line(f"[{key}] suspended at {at}: a re-run resumes it")
        elif seen.suspended and not p.suspended:
            self._line(f"[{key}] attempt {p.attempt}: resumed at {at}")
        elif total and 0 < (4 * done) // total < 4 and (4 * done) // total > seen.quarter:
            self._line(f"[{key}] {at}")
        seen.attempt, seen.done, seen.total, seen.suspended = p.attempt, done, total, p.suspended
        seen.quarter = (4 * done) // total if total else 0
        what = "suspended" if p.suspended else f"(attempt {p.attempt})"
        self._bar(key, f"  {sid} {what}", done, total)

    def _show_end(self, stage: str, sid: str, shards: int) -> None:
        done = self._ended[sid]
        result = done.result
        counts = "no counts"
        if result is not None:
            counts = f"ok {result.success_count:,}, fail {result.fail_count:,}"
        failed = done.status is not StageStatus.COMPLETE and done.message
        why = f": {done.message}" if failed else ""
        self._line(
            f"[{stage}/{sid}] {done.status.value}{why} ({counts}; "
            f"{len(self._ended):,}/{shards:,} shards ended)"
        )
        self._bar_end(stage, sid)

    def _bar_end(self, stage: str, sid: str) -> None:
        done = self._ended[sid]
        total = done.result.total_count if done.result is not None else 0
        status = done.status.value
        self._bar(f"{stage}/{sid}", f"  {sid} {status}", total, total, style=status_style(status))

    def _bar(self, key: str, text: str, done: int, total: int | None, style: str = "") -> None:
        rich = self.rich
        if rich is None:
            return
        if not rich.has_bar(key):
            if len(self._bars) >= MAX_BARS:
                finished = [k for k in self._bars if k.rpartition("/")[2] in self._ended]
                if not finished:
                    return  # every bar shows a running shard: this one counts in the total
                self._bars.remove(finished[0])
                rich.drop(finished[0])
            self._bars.append(key)
        rich.bar(key, text, done, total, style=style)

    def _show_stage(self, stage: str, ids: list[str]) -> None:
        if self.rich is None:
            return
        done = total = 0
        known = True
        for sid in ids:
            ended, seen = self._ended.get(sid), self._seen.get(sid)
            if ended is not None and ended.result is not None:
                done += ended.result.success_count + ended.result.fail_count
                total += ended.result.total_count
            elif seen is not None and seen.total is not None:
                done, total = done + seen.done, total + seen.total
            else:
                done += seen.done if seen is not None else 0
                known = False
        text = f"{stage}: {len(self._ended):,}/{len(ids):,} shards ended"
        self.rich.bar(stage, text, done, total if known else None, style="bold")

    def forked(self) -> None:
        """In a forked child: this watch is the parent's, it never draws here."""
        self._dead = True
        self.lock.release()


# -- fork hooks ------------------------------------------------------------------------

_watches: list[ShardWatch] = []  # the watches polling in this process
_registered = False


def _before_fork() -> None:
    for watch in _watches:
        watch.lock.acquire()


def _after_fork_in_parent() -> None:
    for watch in _watches:
        watch.lock.release()


def _after_fork_in_child() -> None:
    for watch in _watches:
        watch.forked()
    _watches.clear()
    # The parent's bars redirect stdout/stderr through rich: a worker's log line would
    # redraw them from the child. Give the child the plain streams back.
    proxy: Any = getattr(sys.modules.get("rich.file_proxy"), "FileProxy", None)
    if proxy is not None:
        if isinstance(sys.stdout, proxy):
            sys.stdout = sys.__stdout__
        if isinstance(sys.stderr, proxy):
            sys.stderr = sys.__stderr__


def _register_fork_hooks() -> None:
    global _registered  # noqa: PLW0603 - once per process: hooks cannot be removed
    if not _registered:
        os.register_at_fork(
            before=_before_fork,
            after_in_parent=_after_fork_in_parent,
            after_in_child=_after_fork_in_child,
        )
        _registered = True
