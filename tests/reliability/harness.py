"""Shared pieces of the reliability campaign: task definition, recording backend,
worker processes, and the invariant checks run after every scenario.

Everything here is importable by dotted path (``tests.reliability.harness``): the task
manifest records the state class's module, so every process must name it the same way.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from eleanor_cloud.backends.base import (
    Create,
    ObjectBackend,
    Overwrite,
    Version,
    WriteMode,
)
from eleanor_cloud.engine import BaseStage, StageContext
from eleanor_cloud.engine.transitions import COMPACTED, HISTORY_LIMIT
from eleanor_cloud.errors import EleanorError
from eleanor_cloud.models import BaseStageState, StageStatus
from eleanor_cloud.store import StateStore
from eleanor_cloud.store.envelope import LEASE_FORMAT, MANIFEST_FORMAT, STAGE_FORMAT, decode

REPO_ROOT = Path(__file__).resolve().parents[2]
PREFIX = "rel"

# -- the task every scenario runs ------------------------------------------------------


class RelResult(BaseModel):
    """What each stage returns: its index and the pid of the process that ran it."""

    index: int
    pid: int
    attempt: int


class RelState(BaseStageState[RelResult]):
    """The task's shared state (one user field, so user data is round-tripped too)."""

    note: str = ""


def stage_names(count: int) -> list[str]:
    return [f"s{i:02d}" for i in range(count)]


def append_line(path: Path, line: str) -> None:
    """One O_APPEND write: atomic for short lines, durable across SIGKILL (page cache)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def note_time(timeline: Path | None, what: str, **fields: Any) -> None:
    """Append ``{"what", "t": time.monotonic(), "pid", ...}`` to a timeline file.

    Every process of a scenario runs on this machine, so they share one monotonic clock
    (CLOCK_MONOTONIC is system-wide): moments noted by different processes compare.
    """
    if timeline is not None:
        entry = {"what": what, "t": time.monotonic(), "pid": os.getpid(), **fields}
        append_line(timeline, json.dumps(entry, sort_keys=True))


def read_timeline(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class EffectStage(BaseStage[RelState]):
    """Appends ``<stage> <attempt> <pid>`` to a file outside the store: the side effect.

    ``block`` (a marker path): before the effect, write ``<block>.ready`` and wait until
    ``<block>.go`` exists (bounded), so a test can hold a stage open deterministically.
    ``timeline``: also note the effect's moment there (see :func:`note_time`).
    """

    def __init__(
        self,
        name: str,
        index: int,
        effects: Path,
        block: Path | None = None,
        timeline: Path | None = None,
    ) -> None:
        super().__init__(name)
        self.index = index
        self.effects = effects
        self.block = block
        self.timeline = timeline

    def effect(self, ctx: StageContext[RelState]) -> None:
        append_line(self.effects, f"{self.stage_name} {ctx.attempt} {os.getpid()}")
        note_time(self.timeline, "effect", stage=self.stage_name, attempt=ctx.attempt)

    def run(self, state: RelState, ctx: StageContext[RelState]) -> RelResult:
        if self.block is not None:
            Path(f"{self.block}.ready").touch()
            wait_for(Path(f"{self.block}.go"), timeout=60)
        self.effect(ctx)
        state.note = f"ran by {os.getpid()}"
        return RelResult(index=self.index, pid=os.getpid(), attempt=ctx.attempt)


class PollStage(EffectStage):
    """A long stage, as users write one: its side effect, then work in small steps
    until ``ctx.cancelled`` (bounded by ``limit`` seconds). Writes ``<hold>.ready`` once
    working; notes ``stage_cancelled`` with the first moment it saw ``ctx.cancelled``
    true and the last moment it saw it false (both ``time.monotonic``)."""

    def __init__(
        self, name: str, index: int, effects: Path, hold: Path, timeline: Path, limit: float
    ) -> None:
        super().__init__(name, index, effects, timeline=timeline)
        self.hold = hold
        self.limit = limit

    def run(self, state: RelState, ctx: StageContext[RelState]) -> RelResult:
        self.effect(ctx)
        Path(f"{self.hold}.ready").touch()
        ends = time.monotonic() + self.limit
        last_false = time.monotonic()
        while time.monotonic() < ends:
            if ctx.cancelled:
                note_time(self.timeline, "stage_cancelled", last_false=last_false)
                break
            last_false = time.monotonic()
            time.sleep(0.002)  # a step of the stage's own work
        else:
            note_time(self.timeline, "stage_never_cancelled", last_false=last_false)
        state.note = f"ran by {os.getpid()}"
        return RelResult(index=self.index, pid=os.getpid(), attempt=ctx.attempt)


def make_stages(
    count: int,
    effects: Path,
    *,
    block_stage: int | None = None,
    block: Path | None = None,
    timeline: Path | None = None,
    poll_stage: int | None = None,
    poll_limit: float = 60.0,
) -> list[EffectStage]:
    """The task's stages. ``block_stage`` waits for ``<block>.go`` before its effect;
    ``poll_stage`` is a :class:`PollStage` holding on ``<block>`` (needs ``timeline``)."""
    out: list[EffectStage] = []
    for i, name in enumerate(stage_names(count)):
        if i == poll_stage and block is not None and timeline is not None:
            out.append(PollStage(name, i, effects, block, timeline, poll_limit))
        else:
            out.append(EffectStage(name, i, effects, block if i == block_stage else None, timeline))
    return out


def open_backend(spec: dict[str, Any]) -> ObjectBackend:
    """The backend a store spec names: ``{"kind": "local", "root"}`` or
    ``{"kind": "s3", "bucket", "endpoint", "timeout"?, "attempts"?}``."""
    if spec["kind"] == "local":
        from eleanor_cloud.backends.local import LocalBackend

        return LocalBackend(spec["root"], fsync=False)
    from botocore.config import Config

    from eleanor_cloud.backends.s3 import S3Backend

    timeout = spec.get("timeout", 5)
    return S3Backend(
        spec["bucket"],
        endpoint_url=spec["endpoint"],
        region_name="us-east-1",
        config=Config(
            connect_timeout=timeout,
            read_timeout=timeout,
            retries={"mode": "standard", "max_attempts": spec.get("attempts", 4)},
        ),
    )


# -- waiting without sleeping as synchronisation ----------------------------------------


def wait_for(path: Path, timeout: float = 30.0) -> None:
    """Poll for a marker file with a bounded deadline."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout}s")
        time.sleep(0.005)


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout}s")
        time.sleep(0.005)


# -- a backend wrapper that records writes and can kill or stop its own process ---------


@dataclass
class Trigger:
    """Fire ``action`` (``kill`` or ``stop``) at the ``at``-th counted operation.

    ``ops``: which operations count (``write`` or ``any``); ``phase``: ``before`` the
    operation reaches the inner backend or ``after`` it returned successfully;
    ``after_lease``: count only operations that begin once a lease write succeeded (so
    the process is a lease holder when it fires).
    """

    at: int
    phase: str = "before"
    ops: str = "write"
    action: str = "kill"
    marker: str | None = None
    after_lease: bool = False


@dataclass
class Stall:
    """A late answer and a partition, in-process: once a write to a key ending in
    ``key`` has reached the store, its answer is held back, and so is every request for
    the lease from then on, until ``<marker>.go`` exists (``<marker>.ready`` says the
    stall began). What a holder sees when its request landed but the network between
    it and the store went quiet."""

    key: str
    marker: str


class RecordingBackend:
    """Wraps a backend: logs each write attempt and outcome as JSON lines (one file per
    process), fires a :class:`Trigger` (SIGKILL or SIGSTOP of this very process), and
    applies a :class:`Stall`."""

    def __init__(
        self,
        inner: ObjectBackend,
        log: Path | None = None,
        trigger: Trigger | None = None,
        stall: Stall | None = None,
    ) -> None:
        self.inner = inner
        self.log = log
        self.trigger = trigger
        self.stall = stall
        self.stalled = False
        self.count = 0
        self.resumed = False
        self.leased = False  # a lease write of this process succeeded
        self._lock = threading.Lock()

    @property
    def description(self) -> str:
        return self.inner.description

    def _record(self, **entry: Any) -> None:
        if self.log is not None:
            entry.setdefault("resumed", self.resumed)
            entry.update(pid=os.getpid())
            append_line(self.log, json.dumps(entry, sort_keys=True))

    def _fire(self, trig: Trigger) -> None:
        if trig.action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if trig.marker:
            Path(trig.marker).touch()
        os.kill(os.getpid(), signal.SIGSTOP)
        # Continued (SIGCONT): everything this process does from here is a zombie's.
        self.resumed = True
        self._record(op="resumed")

    def _step(self, op: str) -> Trigger | None:
        trig = self.trigger
        if trig is None or (trig.ops == "write" and op != "write"):
            return None
        if trig.after_lease and not self.leased:
            return None
        with self._lock:
            self.count += 1
            if self.count != trig.at:
                return None
        return trig

    def _wait_out_stall(self, key: str) -> None:
        if self.stall is not None and self.stalled and key.endswith("/_lease.json"):
            wait_for(Path(f"{self.stall.marker}.go"), timeout=120)

    def _stall_answer(self, key: str) -> None:
        stall = self.stall
        if stall is not None and not self.stalled and key.endswith(stall.key):
            self.stalled = True
            Path(f"{stall.marker}.ready").touch()
            wait_for(Path(f"{stall.marker}.go"), timeout=120)

    def read(self, key: str) -> tuple[bytes, Version]:
        self._wait_out_stall(key)
        trig = self._step("read")
        if trig and trig.phase == "before":
            self._fire(trig)
        result = self.inner.read(key)
        if trig and trig.phase == "after":
            self._fire(trig)
        return result

    def list(self, prefix: str, delimiter: str | None = None) -> Iterator[str]:
        trig = self._step("list")
        if trig and trig.phase == "before":
            self._fire(trig)
        result = list(self.inner.list(prefix, delimiter))
        if trig and trig.phase == "after":
            self._fire(trig)
        return iter(result)

    def delete(self, key: str, if_version: Version | None = None) -> None:
        trig = self._step("delete")
        if trig and trig.phase == "before":
            self._fire(trig)
        self.inner.delete(key, if_version)
        self._record(op="delete", key=key, ok=True)
        if trig and trig.phase == "after":
            self._fire(trig)

    def write(self, key: str, data: bytes, mode: WriteMode) -> Version:
        self._wait_out_stall(key)
        trig = self._step("write")
        header = envelope_header(data)
        if trig and trig.phase == "before":
            self._fire(trig)
        # Whether the write *began* after a thaw: another thread may be frozen between
        # its write and this log line, and must not be mistaken for a zombie.
        resumed = self.resumed
        # When the request began and ended (time.monotonic: one clock for every process
        # on this machine), so a scenario can order writes against other processes.
        sent = time.monotonic()
        try:
            version = self.inner.write(key, data, mode)
        except EleanorError as exc:
            self._record(
                op="write",
                key=key,
                mode=mode_name(mode),
                ok=False,
                error=type(exc).__name__,
                resumed=resumed,
                sent=sent,
                done=time.monotonic(),
                **header,
            )
            raise
        self._stall_answer(key)
        done = time.monotonic()
        if key.endswith("/_lease.json"):
            self.leased = True
        self._record(
            op="write",
            key=key,
            mode=mode_name(mode),
            ok=True,
            resumed=resumed,
            sent=sent,
            done=done,
            **header,
        )
        if trig and trig.phase == "after":
            self._fire(trig)
        return version


def mode_name(mode: WriteMode) -> str:
    if isinstance(mode, Create):
        return "create"
    if isinstance(mode, Overwrite):
        return "overwrite"
    return "replace"


def envelope_header(data: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except ValueError:
        return {}
    if not isinstance(doc, dict):
        return {}
    return {k: doc.get(k) for k in ("revision", "epoch", "write_id", "writer")}


def read_log(paths: list[Path]) -> list[dict[str, Any]]:
    """Every logged request but the task index's markers: they are no envelopes (no
    revision, no epoch) and not fenced on purpose (a fenced-out holder's write-ahead
    mark is an extra a reader verifies away; tests/engine/test_task_index.py)."""
    entries: list[dict[str, Any]] = []
    for path in paths:
        if path.exists():
            for line in path.read_text().splitlines():
                if line.strip():
                    entry = json.loads(line)
                    if "/_index/" not in str(entry.get("key", "")):
                        entries.append(entry)
    return entries


# -- worker processes --------------------------------------------------------------------


def spawn_worker(
    spec: dict[str, Any], spec_path: Path, module: str = "tests.reliability.worker"
) -> subprocess.Popen[bytes]:
    """Start ``python -m <module> <spec.json>`` in the repository root (by default the
    campaign's task worker)."""
    spec_path.write_text(json.dumps(spec))
    err = open(f"{spec_path}.stderr", "wb")  # noqa: SIM115 - owned by the child
    try:
        return subprocess.Popen(
            [sys.executable, "-m", module, str(spec_path)],
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    finally:
        err.close()


def worker_result(spec_path: Path) -> dict[str, Any]:
    result = Path(f"{spec_path}.result")
    if not result.exists():
        stderr = Path(f"{spec_path}.stderr")
        tail = stderr.read_text()[-2000:] if stderr.exists() else ""
        return {"outcome": "no-result", "error": tail}
    out: dict[str, Any] = json.loads(result.read_text())
    return out


def finish(proc: subprocess.Popen[bytes], timeout: float = 120.0) -> int:
    """Wait for a worker; a worker that hangs is killed and reported as such."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return -999


# -- invariants ------------------------------------------------------------------------


@dataclass
class TaskCheck:
    """What the final store and the side-effect file say about one task."""

    problems: list[str] = field(default_factory=list)
    effects: int = 0
    interrupted_attempts: int = 0
    duplicate_effects: int = 0  # effects beyond one per stage (re-runs of cut attempts)


def parse_effects(path: Path) -> dict[str, list[tuple[int, int]]]:
    """``stage -> [(attempt, pid)]`` from the side-effect file."""
    found: dict[str, list[tuple[int, int]]] = defaultdict(list)
    if path.exists():
        for line in path.read_text().splitlines():
            stage, attempt, pid = line.split()
            found[stage].append((int(attempt), int(pid)))
    return found


def check_objects_decode(store: StateStore, task_id: str) -> list[str]:
    """Every object under the task decodes as the envelope its key calls for."""
    problems = []
    prefix = f"{store.prefix}/{task_id}/" if store.prefix else f"{task_id}/"
    for key in store.backend.list(prefix):
        name = key.rsplit("/", 1)[-1]
        fmt = {"_task.json": MANIFEST_FORMAT, "_lease.json": LEASE_FORMAT}.get(name, STAGE_FORMAT)
        try:
            data, _ = store.backend.read(key)
            decode(data, key=key, expected_format=fmt)
        except EleanorError as exc:
            problems.append(f"{key}: does not decode: {exc}")
    return problems


def check_history(state: BaseStageState[Any]) -> list[str]:
    """One history entry per attempt, numbered 1..attempts, or (past ``HISTORY_LIMIT``
    entries) the compacted form: the first entry, one ``compacted:`` summary standing
    for the attempts in between, then the latest attempts one by one, consecutive."""
    history = state.history
    numbers = [h.attempt for h in history]
    if len(history) <= HISTORY_LIMIT and not any(h.message.startswith(COMPACTED) for h in history):
        problems = []
        if state.attempts != len(history):
            problems.append(f"attempts={state.attempts} but {len(history)} history entries")
        if numbers != list(range(1, len(history) + 1)):
            problems.append(f"history attempts {numbers}")
        return problems
    if len(history) > HISTORY_LIMIT:
        return [f"{len(history)} history entries, over the limit of {HISTORY_LIMIT}"]
    summary = history[1]
    spans = re.fullmatch(rf"{COMPACTED}attempts (\d+)-(\d+) .*", summary.message)
    if numbers[0] != 1 or spans is None or len(history) < 3:
        return [f"compacted history not of the form first, summary, latest: {numbers}"]
    low, high = int(spans[1]), int(spans[2])
    latest = numbers[2:]
    problems = []
    if low != 2 or latest != list(range(high + 1, high + 1 + len(latest))):
        problems.append(f"compacted history skips attempts: 1, {low}-{high}, {latest}")
    if latest[-1] != state.attempts:
        problems.append(f"attempts={state.attempts} but the latest entry is {latest[-1]}")
    return problems


def check_task(
    store: StateStore, task_id: str, count: int, effects: Path, *, expect_complete: bool = True
) -> TaskCheck:
    """The invariants of a finished task (see tests/reliability/README.md)."""
    out = TaskCheck()
    out.problems += check_objects_decode(store, task_id)
    records = store.load_task_records(task_id, RelState)
    ran = parse_effects(effects)
    for index, name in enumerate(stage_names(count)):
        record = records.get(name)
        if record is None:
            out.problems.append(f"{name}: no stored state")
            continue
        state = record.value
        attempts_seen = [a for a, _pid in ran.get(name, [])]
        out.effects += len(attempts_seen)
        out.duplicate_effects += max(0, len(attempts_seen) - 1)
        if expect_complete and state.status is not StageStatus.COMPLETE:
            out.problems.append(f"{name}: status {state.status.value}, not COMPLETE")
        if state.status is StageStatus.COMPLETE:
            if state.result is None:
                out.problems.append(f"{name}: COMPLETE without a result")
            elif state.result.index != index:
                out.problems.append(f"{name}: result of stage {state.result.index}")
            if not state.history or state.history[-1].end_status is not StageStatus.COMPLETE:
                out.problems.append(f"{name}: COMPLETE but the last history entry is not")
            # The completing attempt ran its body exactly once; no attempt ran twice.
            if state.result is not None and attempts_seen.count(state.result.attempt) != 1:
                out.problems.append(
                    f"{name}: completing attempt {state.result.attempt} has "
                    f"{attempts_seen.count(state.result.attempt)} side effects"
                )
            if state.result is not None and state.result.attempt != state.attempts:
                out.problems.append(
                    f"{name}: result from attempt {state.result.attempt} "
                    f"but attempts={state.attempts}"
                )
        out.problems += [f"{name}: {p}" for p in check_history(state)]
        dupes = [a for a, n in Counter(attempts_seen).items() if n > 1]
        if dupes:
            out.problems.append(f"{name}: attempts {dupes} ran their body more than once")
        if any(a > state.attempts for a in attempts_seen):
            out.problems.append(
                f"{name}: a side effect from an attempt never recorded "
                f"({attempts_seen} vs attempts={state.attempts})"
            )
        cut = [h for h in state.history if h.message.startswith("interrupted")]
        out.interrupted_attempts += len(cut)
        compacted = any(h.message.startswith(COMPACTED) for h in state.history)
        if (
            not cut
            and not compacted
            and state.status is StageStatus.COMPLETE
            and len(attempts_seen) != 1
        ):
            out.problems.append(f"{name}: never interrupted yet {len(attempts_seen)} effects")
        if state.status is StageStatus.COMPLETE and not attempts_seen:
            out.problems.append(f"{name}: COMPLETE but its side effect never happened")
    return out


def check_write_log(entries: list[dict[str, Any]]) -> list[str]:
    """Across every process's successful writes: per key, no two share a revision (no
    lost update) and epochs never go down as revisions go up (no zombie write landed)."""
    problems = []
    by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in entries:
        if entry.get("op") == "write" and entry.get("ok"):
            by_key[entry["key"]].append(entry)
    for key, writes in by_key.items():
        revisions = Counter(w["revision"] for w in writes)
        twice = sorted(r for r, n in revisions.items() if n > 1)
        if twice:
            problems.append(f"{key}: revisions {twice} written twice (a lost update)")
        ordered = sorted(writes, key=lambda w: w["revision"])
        for before, after in pairwise(ordered):
            if after["epoch"] < before["epoch"]:
                problems.append(
                    f"{key}: revision {after['revision']} by {after['writer']} at epoch "
                    f"{after['epoch']} landed after epoch {before['epoch']}"
                )
    return problems
