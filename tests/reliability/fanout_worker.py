"""A fan-out worker of the reliability campaign (scenario 10): plan, shards, join.

``python -m tests.reliability.fanout_worker <spec.json>``; the outcome goes to
``<spec.json>.result`` (absent if the process was killed). The task has two stages: a
sharded records stage ``fan`` (``shards`` shards of ``per_shard`` records, read a page
of ``batch_size`` at a time, checkpointed every ``checkpoint_records`` records) and
``after``, which returns the joined result. A worker:

1. runs the task until the plan exists (one of the workers plans; the others see
   ``LeaseHeld`` or the plan);
2. sweeps the plan's shards whose ``done/`` marker is missing, in a random order,
   running each with ``run_shard`` and skipping ``LeaseHeld`` (a shard another worker
   runs) and ``LeaseLost`` (fenced out: it was taken over), until every marker exists;
3. runs the task once more (the join; ``LeaseHeld`` if another worker is joining).

Every step is bounded by ``deadline`` seconds. Side effects go to files outside the
store: ``<effects>`` gets one fixed-width line per record offered
(:func:`effect_line`), ``<events>`` one line per checkpoint, lost shard, shard run and
join (:func:`parse_events`). Spec keys also: ``store``, ``task_id``, ``log`` (write log),
``trigger`` (see :class:`~tests.reliability.harness.Trigger`), ``gate``, ``seed``,
``lease_ttl``, ``renew_interval``, ``clock_skew_tolerance``, ``join_wait``,
``max_attempts``, ``work_iterations`` (CPU per record), ``poll``, ``freeze_marker``
(SIGUSR2 freezes the worker at its next store operation, which touches the marker
first, see :class:`FreezingBackend`), ``stage_kills`` (``{"key", "tokens": [[path,
phase], ...]}``: see ``FreezingBackend._claim``) and ``mode: freeze-in-lock`` (see
:func:`freeze_in_lock`).
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import random
import re
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from eleanor_cloud import Page, SimpleRecordsResult
from eleanor_cloud.engine import Backoff, BaseStage, EngineEvent, StageContext, TaskEngine
from eleanor_cloud.engine.fanout import Shard, list_done, load_plan
from eleanor_cloud.errors import LeaseHeld, LeaseLost
from eleanor_cloud.models import BaseStageState, StageStatus
from eleanor_cloud.store import StateStore
from tests.reliability.harness import (
    PREFIX,
    RecordingBackend,
    Trigger,
    append_line,
    open_backend,
    wait_for,
)

FAN, AFTER = "fan", "after"
# ``e <shard> <batch position> <record> <attempt>``: fixed width, so that a file's size
# says how many records were offered (the test watches it without reading it).
EFFECT_WIDTH = 2 + 4 + 1 + 6 + 1 + 8 + 1 + 3 + 1


def effect_line(shard: str, position: int, record: int, attempt: int) -> str:
    line = f"e {shard:>4} {position:06d} {record:08d} {attempt:03d}"
    assert len(line) + 1 == EFFECT_WIDTH
    return line


def parse_effects(path: Path) -> list[tuple[str, int, int, int]]:
    """``[(shard, position, record, attempt)]`` in the order they were offered."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        _, shard, position, record, attempt = line.split()
        out.append((shard, int(position), int(record), int(attempt)))
    return out


_EVENT = re.compile(r"\[(?P<shard>[^\]]+)\] (?:checkpoint|suspended at) batch (?P<batch>\d+)")


def parse_events(path: Path) -> list[list[str]]:
    """The events file: ``c <shard> <batches> <attempt>`` (a checkpoint landed),
    ``lost <shard> <attempt>``, ``ran <shard> <status> <done> <attempts>``, ``join``."""
    if not path.exists():
        return []
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


class FanState(BaseStageState[SimpleRecordsResult]):
    """Both stages' result is the joined counts."""


def spin(iterations: int) -> int:
    x = 0
    for i in range(iterations):
        x = (x * 31 + i) & 0xFFFFFFFF
    return x


class FanStage(BaseStage[FanState]):
    """Shard ``sNN`` holds records ``[NN * per, (NN + 1) * per)``; every record succeeds."""

    name = FAN

    def __init__(self, spec: dict[str, Any], effects: Path, current: dict[str, int]) -> None:
        super().__init__()
        self.shards, self.per = spec["shards"], spec["per_shard"]
        self.batch_size, self.every = spec["batch_size"], spec["checkpoint_records"]
        self.work = spec.get("work_iterations", 0)
        self.effects = effects
        self.current = current  # shard -> the attempt this process is running

    def plan(self, state: FanState, ctx: StageContext[FanState]) -> list[Shard]:
        return [
            Shard(f"s{i:02d}", {"lo": i * self.per, "hi": (i + 1) * self.per})
            for i in range(self.shards)
        ]

    def run(self, state: FanState, ctx: StageContext[FanState]) -> None:
        shard = ctx.shard
        lo, hi = shard.spec["lo"], shard.spec["hi"]
        self.current[shard.id] = ctx.attempt

        def read(cursor: Any, limit: int) -> Page:
            start = lo if cursor is None else int(cursor)
            end = min(start + limit, hi)
            items = [{"id": str(i)} for i in range(start, end)]
            return Page(items, cursor=end if end < hi else None, total=hi - lo)

        batches = ctx.records(
            read,
            batch_size=self.batch_size,
            checkpoint_records=self.every,
            checkpoint_every=3600.0,  # by count only: where a kill lands is the test's choice
        )
        for batch in batches:
            for item in batch:
                spin(self.work)
                line = effect_line(shard.id, batch.position, int(item["id"]), ctx.attempt)
                append_line(self.effects, line)
                batch.ok(item)


class AfterStage(BaseStage[FanState]):
    name = AFTER

    def run(self, state: FanState, ctx: StageContext[FanState]) -> Any:
        return ctx.result_of(FAN)


def freeze_this_thread() -> None:
    """SIGSTOP this process, stopping the calling thread before it runs on.

    ``os.kill(os.getpid(), SIGSTOP)`` from a thread other than the main one lets the
    caller run on until the thread the kernel picked for the signal (the main one,
    busy in user code) starts the group stop: 20 ms and a whole store write in one
    run here. Aimed at the calling thread, the stop begins with it."""
    signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)


class FreezingBackend(RecordingBackend):
    """Freezes its own process (SIGSTOP) between store requests once asked
    (``freeze_soon``, from a SIGUSR2 handler): the next thread to begin an operation
    closes a gate, waits until no other thread is inside one, and stops the process.

    Between requests of *every* thread: on the local-directory backend a process
    frozen inside a replace holds that object's ``flock``, and every other writer of
    it waits for it (a lease takeover, or the fence of the progress object that the
    main thread was checkpointing while the renewer froze the process), for ever until
    dc3a72b and for the backend's ``lock_timeout`` since: see the strict xfail in
    test_fanout.py."""

    def __init__(
        self,
        inner: Any,
        log: Path | None,
        trigger: Any,
        marker: Path | None,
        stage_kills: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(inner, log, trigger)
        self.marker = marker
        self.asked = False
        self.stage_kills = stage_kills or {"key": None, "tokens": []}
        self._gate = threading.Condition()
        self._inside = 0  # threads inside an operation of the inner backend
        self._closed = False

    def freeze_soon(self) -> None:
        self.asked = True

    @contextlib.contextmanager
    def _operation(self) -> Iterator[None]:
        with self._gate:
            while self._closed:
                self._gate.wait()
            if self.asked:
                self.asked, self._closed = False, True
                while self._inside:
                    self._gate.wait()  # the others' requests end on their own
                if self.marker is not None:
                    self.marker.touch()
                freeze_this_thread()  # every thread stops here or at the gate
                self.resumed, self._closed = True, False
                self._gate.notify_all()
            self._inside += 1
        try:
            yield
        finally:
            with self._gate:
                self._inside -= 1
                self._gate.notify_all()

    def read(self, key: str) -> Any:
        with self._operation():
            return super().read(key)

    def write(self, key: str, data: bytes, mode: Any) -> Any:
        with self._operation():
            phase = self._claim(key)
            if phase == "before":
                os.kill(os.getpid(), signal.SIGKILL)
            version = super().write(key, data, mode)
            if phase == "after":
                os.kill(os.getpid(), signal.SIGKILL)
            return version

    def list(self, prefix: str, delimiter: str | None = None) -> Any:
        with self._operation():
            return super().list(prefix, delimiter)

    def delete(self, key: str, if_version: Any = None) -> None:
        with self._operation():
            super().delete(key, if_version)

    def _claim(self, key: str) -> str | None:
        """``stage_kills``: the first writes of the stage object by any worker each
        claim a token (a file created exclusively, holding the pid) and die, right
        before or after the write: the planner's RUNNING, a fence after a takeover,
        the join, whichever come first."""
        wanted = self.stage_kills["key"]
        if wanted is None or not key.endswith(wanted):
            return None
        for token, phase in self.stage_kills["tokens"]:
            try:
                fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                continue
            os.write(fd, f"{os.getpid()}\n".encode())
            os.close(fd)
            return str(phase)
        return None


def build(spec: dict[str, Any], store: StateStore, wait: float, on_event: Any, current: Any) -> Any:
    return TaskEngine(
        spec["task_id"],
        [FanStage(spec, Path(spec["effects"]), current), AfterStage()],
        FanState,
        store,
        max_attempts=spec.get("max_attempts", 20),
        backoff=Backoff(initial=0.01, max_delay=0.05),
        lease_ttl=spec["lease_ttl"],
        wait_for_lease=wait,
        renew_interval=spec.get("renew_interval"),
        clock_skew_tolerance=spec.get("clock_skew_tolerance", 0.0),
        on_event=on_event,
    )


def freeze_in_lock(spec: dict[str, Any], store: StateStore) -> None:
    """``mode: freeze-in-lock``: run shard ``s00``, and freeze (SIGSTOP) inside the local
    backend's replace of that shard's lease at the first renewal, where the replace
    holds the object's ``flock`` (``os.replace`` runs under it), touching
    ``<freeze_marker>`` first. The reproduction of the strict xfail in test_fanout.py."""
    real, marker = os.replace, Path(spec["freeze_marker"])

    def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        renewal = threading.current_thread() is not threading.main_thread()
        if renewal and str(dst).endswith("/shards/s00/_lease.json"):
            marker.touch()
            freeze_this_thread()
        real(src, dst, *args, **kwargs)

    os.replace = replace  # this process only: it is a reproduction's child
    build(spec, store, 0.0, None, {}).run_shard(FAN, "s00")


def main(spec_path: Path) -> None:
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # the test's dump of a hang
    spec = json.loads(spec_path.read_text())
    result_path = Path(f"{spec_path}.result")
    trigger = Trigger(**spec["trigger"]) if spec.get("trigger") else None
    log = Path(spec["log"]) if spec.get("log") else None
    marker = Path(spec["freeze_marker"]) if spec.get("freeze_marker") else None
    backend = FreezingBackend(
        open_backend(spec["store"]), log, trigger, marker, spec.get("stage_kills")
    )
    signal.signal(signal.SIGUSR2, lambda _signum, _frame: backend.freeze_soon())
    if spec.get("mode") == "freeze-in-lock":
        freeze_in_lock(spec, StateStore(backend.inner, PREFIX))
        return
    store = StateStore(backend, PREFIX)
    events = Path(spec["events"])
    task_id = spec["task_id"]
    rng = random.Random(spec.get("seed", 0))
    current: dict[str, int] = {}

    def seen(ev: EngineEvent) -> None:
        if ev.kind == "stage_checkpointed":
            found = _EVENT.search(ev.message)
            if found:
                append_line(events, f"c {found['shard']} {found['batch']} {ev.attempt}")
        elif ev.kind == "stage_completed" and ev.stage_name == FAN:
            append_line(events, "join")

    # The task's runs (plan, join) wait out a dead holder's lease; shards never wait:
    # a held shard is another worker's, and a dead worker's is taken over once its
    # lease looks expired (watched for a TTL whatever the wait).
    join_wait = spec["join_wait"]
    task = build(spec, store, join_wait, seen, current)
    shards = build(spec, store, 0.0, seen, current)
    gate = spec.get("gate")
    if gate:
        Path(gate["ready"]).touch()
        wait_for(Path(gate["go"]), timeout=60)
    deadline = time.monotonic() + spec["deadline"]
    poll = spec.get("poll", 0.02)
    out: dict[str, Any] = {"pid": os.getpid(), "ran": 0, "held": 0, "lost": 0, "sweeps": 0}
    try:
        plan = load_plan(store, task_id, FAN)
        while plan is None:
            if time.monotonic() > deadline:
                raise TimeoutError("no plan before the deadline")
            try:
                task.run()
            except LeaseHeld:
                out["held"] += 1
                time.sleep(poll)  # polling: the planner is writing the plan
            plan = load_plan(store, task_id, FAN)
        wanted = [s.id for s in plan.shards]
        while True:
            left = sorted(set(wanted) - set(list_done(store, task_id, FAN)))
            if not left:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"shards {left} not done before the deadline")
            out["sweeps"] += 1
            rng.shuffle(left)
            ran = False
            for shard_id in left:
                try:
                    summary = shards.run_shard(FAN, shard_id, plan_id=plan.plan_id)
                except LeaseHeld:
                    out["held"] += 1
                    continue
                except LeaseLost:
                    out["lost"] += 1
                    append_line(events, f"lost {shard_id} {current.get(shard_id, 0)}")
                    continue
                ran = True
                out["ran"] += 1
                append_line(
                    events,
                    f"ran {shard_id} {summary.status.value} {int(summary.done)} {summary.attempts}",
                )
            if not ran:
                time.sleep(poll)  # polling: every shard left is another worker's
        try:
            final = task.run()
        except LeaseHeld:
            out["outcome"] = "join_held"
        else:
            out["outcome"] = "complete" if final.status is StageStatus.COMPLETE else "other"
            out["status"] = final.status.value
            out["message"] = final.message
    except LeaseLost as exc:  # the task's lease (plan or join) was taken over
        out.update(outcome="lease_lost", error=str(exc))
    except Exception as exc:
        out.update(
            outcome="error", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc()
        )
    out["resumed"] = backend.resumed
    result_path.write_text(json.dumps(out))


if __name__ == "__main__":
    # Under its dotted name, not __main__: the manifest records the state class's module.
    import importlib

    importlib.import_module("tests.reliability.fanout_worker").main(Path(sys.argv[1]))
