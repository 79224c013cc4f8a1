"""Issue 16 on ECS/Spot: SIGTERM checkpoints a records stage's position before exit.

Real runner processes on the moto S3 server. The task is a, r, c; ``r`` is a records
stage over 40 records in batches of 5 (``tests.aws.taskmod.Numbers``), whose batch at
position 2 waits for a file the test creates: the test signals the runner while that
batch is in flight, so where the run stops is decided by the runner, not by timing.
"""

from __future__ import annotations

import signal
import subprocess
from collections import Counter
from pathlib import Path

import pytest

import eleanor_cloud as ec
from eleanor_cloud.aws import EXIT_INTERRUPTED, EXIT_OK, EXIT_STOPPED
from eleanor_cloud.engine.progress import Progress
from eleanor_cloud.models import SimpleRecordsResult, StageStatus
from eleanor_cloud.store import documents
from tests.aws.runner_support import read_until, start, wait_for
from tests.aws.taskmod import (
    HOLD_ENV,
    RECORDS_BATCH,
    RECORDS_COUNT,
    RECORDS_FAILING,
    TState,
)

FACTORY = "tests.aws.taskmod:build_records_engine"
BATCHES = RECORDS_COUNT // RECORDS_BATCH  # 8
EVERY_RECORD = SimpleRecordsResult(
    total_count=RECORDS_COUNT,
    success_count=RECORDS_COUNT - len(RECORDS_FAILING),
    fail_count=len(RECORDS_FAILING),
    unprocessed_count=0,
)


def _progress(store: ec.StateStore, task_id: str) -> Progress:
    record = documents.load_progress(store, task_id, "r", Progress)
    assert record is not None
    return record.value


def _lines(side: Path, name: str) -> list[tuple[int, int, list[str]]]:
    """``(pid, position, rest)`` per line of ``r.started`` / ``r.offered``."""
    path = side / f"r.{name}"
    rows = [line.split() for line in path.read_text().splitlines()] if path.exists() else []
    return [(int(row[0]), int(row[1]), row[2:]) for row in rows]


def _runs(side: Path, stage: str) -> int:
    path = side / f"{stage}.runs"
    return len(path.read_text().splitlines()) if path.exists() else 0


def _finish(
    env: dict[str, str], store: ec.StateStore, task_id: str, procs: list[subprocess.Popen[str]]
) -> int:
    """A second container with nothing held: it must complete the task. Its pid."""
    second = start(env, task_id, "60", factory=FACTORY)
    procs.append(second)
    _, err = second.communicate(timeout=120)
    assert second.returncode == EXIT_OK, err
    return second.pid


def test_sigterm_suspends_a_records_stage_at_a_batch_boundary_and_the_next_container_resumes(
    env: dict[str, str],
    store: ec.StateStore,
    tmp_path: Path,
    procs: list[subprocess.Popen[str]],
    entry: str,
) -> None:
    held = {**env, HOLD_ENV: "2"}
    first = start(held, "rec-stop", "60", entry=entry, factory=FACTORY, debug=True)
    procs.append(first)
    wait_for(tmp_path / "r.batch.2.started", first)
    first.send_signal(signal.SIGTERM)
    logged: list[str] = []
    # Released only once the runner has asked the engine to stop (it logs that next).
    pumping = read_until(first, "letting stage 'r' finish", collected=logged)
    (tmp_path / "r.release").touch()  # the batch in flight may now finish
    first.wait(timeout=60)
    pumping.join(30)

    assert first.returncode == EXIT_STOPPED, "".join(logged)
    assert any("at a batch boundary of records stage 'r'" in line for line in logged), logged
    # The position is checkpointed at the boundary after the batch in flight.
    progress = _progress(store, "rec-stop")
    assert progress.suspended is True and progress.attempt == 1
    assert progress.batches == 3 and progress.cursor == 3 * RECORDS_BATCH
    assert progress.offered == 3 * RECORDS_BATCH
    assert progress.success == 3 * RECORDS_BATCH - 1  # record 3 failed
    r = store.load("rec-stop", "r", TState)
    assert r.status is StageStatus.RUNNING and r.attempts == 1 and r.history == []
    assert "c" not in store.load_task("rec-stop", TState)  # nothing new was started
    lease = store.load_lease("rec-stop")
    assert lease is not None and lease.value.released

    second_pid = _finish(env, store, "rec-stop", procs)

    r = store.load("rec-stop", "r", TState)
    assert r.status is StageStatus.COMPLETE and r.attempts == 1  # the same attempt resumed
    assert [h.end_status for h in r.history] == [StageStatus.COMPLETE]
    assert r.result == EVERY_RECORD
    # Every record was offered and reported exactly once, across the two processes.
    offered = _lines(tmp_path, "offered")
    assert [position for _, position, _ in offered] == list(range(BATCHES))
    assert sorted(int(i) for _, _, ids in offered for i in ids) == list(range(RECORDS_COUNT))
    assert {pid for pid, position, _ in offered if position < 3} == {first.pid}
    assert {pid for pid, position, _ in offered if position >= 3} == {second_pid}
    assert Counter(position for _, position, _ in _lines(tmp_path, "started")) == Counter(
        range(BATCHES)
    )
    progress = _progress(store, "rec-stop")
    assert progress.finished and not progress.suspended and progress.batches == BATCHES
    assert [(a.attempt, a.slices) for a in progress.attempts] == [(1, 2)]
    assert (_runs(tmp_path, "a"), _runs(tmp_path, "c")) == (1, 1)
    assert store.load("rec-stop", "c", TState).status is StageStatus.COMPLETE


def test_sigterm_past_the_grace_period_mid_batch_re_offers_only_that_batch(
    env: dict[str, str], store: ec.StateStore, tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    # The batch in flight never finishes: the grace period ends mid-batch, the attempt
    # is recorded as interrupted (76), and the last checkpoint (after every batch here)
    # stands. The next container's attempt re-offers that one batch, with its key.
    first = start({**env, HOLD_ENV: "2"}, "rec-cut", "0.5", factory=FACTORY)
    procs.append(first)
    wait_for(tmp_path / "r.batch.2.started", first)
    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=60)

    assert first.returncode == EXIT_INTERRUPTED, err
    progress = _progress(store, "rec-cut")
    assert progress.batches == 2 and progress.cursor == 2 * RECORDS_BATCH
    assert progress.suspended is False  # stopped mid-batch, not at a boundary
    r = store.load("rec-cut", "r", TState)
    assert r.status is StageStatus.RETRY and r.attempts == 1
    assert r.history[-1].message.startswith("interrupted: SIGTERM received")

    second_pid = _finish(env, store, "rec-cut", procs)

    r = store.load("rec-cut", "r", TState)
    assert r.status is StageStatus.COMPLETE and r.attempts == 2
    assert r.result == EVERY_RECORD
    started = _lines(tmp_path, "started")
    by_first = [position for pid, position, _ in started if pid == first.pid]
    by_second = [position for pid, position, _ in started if pid == second_pid]
    assert by_first == [0, 1, 2] and by_second == list(range(2, BATCHES))
    keys = {(pid, position): rest[0] for pid, position, rest in started}
    assert keys[(first.pid, 2)] == keys[(second_pid, 2)] == "rec-cut/r/2"  # same key
    offered = _lines(tmp_path, "offered")
    assert sorted(int(i) for _, _, ids in offered for i in ids) == list(range(RECORDS_COUNT))


def test_a_records_stage_interrupted_mid_batch_writes_nothing_after_the_release(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What the container runner does when the grace period ends mid-batch, in process:
    # interrupt() from another thread; then the batch in flight finishes after all
    # (a container's os._exit usually comes first; an in-process caller has no such
    # luck). The next holder's read of the progress and its first write are made to
    # straddle that batch's end, the window a real race would hit.
    import threading

    from eleanor_cloud.engine import BaseStage, Page, StageContext, TaskEngine

    a_in_batch, a_go = threading.Event(), threading.Event()

    def read(cursor: object, limit: int) -> Page:
        start = 0 if cursor is None else int(str(cursor))
        end = min(start + limit, 20)
        return Page(list(range(start, end)), cursor=end if end < 20 else None, total=20)

    class Held(BaseStage[TState]):
        name = "r"

        def run(self, state: TState, ctx: StageContext[TState]) -> None:
            for batch in ctx.records(read, batch_size=5, checkpoint_every=0):
                if ctx.attempt == 1 and batch.position == 1:
                    a_in_batch.set()
                    assert a_go.wait(30), "the test never released the batch"
                for item in batch:
                    batch.ok(item)

    store = ec.open_store("memory://")
    first = TaskEngine("zombie-write", [Held()], TState, store, holder="first")
    a_outcome: list[object] = []
    a = threading.Thread(target=lambda: a_outcome.append(_run_or_error(first)), daemon=True)
    a.start()
    assert a_in_batch.wait(30)
    assert first.interrupt("grace period over") is True  # attempt 1: RETRY, lease released

    load = documents.load_progress

    def then_the_batch_ends(*args: object, **kwargs: object) -> object:
        loaded = load(*args, **kwargs)  # type: ignore[arg-type]
        if threading.current_thread() is not a:
            a_go.set()  # the interrupted holder's batch finishes after all
            a.join(30)
        return loaded

    monkeypatch.setattr(documents, "load_progress", then_the_batch_ends)
    second = TaskEngine("zombie-write", [Held()], TState, store, holder="second")
    result = _run_or_error(second)
    assert not a.is_alive()
    assert not isinstance(result, BaseException), result
    assert getattr(result, "status", None) is StageStatus.COMPLETE
    # The interrupted holder stopped at its next check, writing nothing more.
    assert len(a_outcome) == 1 and isinstance(a_outcome[0], ec.LeaseLost), a_outcome


def _run_or_error(engine: object) -> object:
    try:
        return engine.run()  # type: ignore[attr-defined]
    except Exception as exc:
        return exc
