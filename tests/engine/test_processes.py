"""Real processes on a local-directory store: SIGKILL and resume, SIGSTOP zombie fencing,
cancel from another process, two processes at once.

Waiting is always on files polled with bounded deadlines (``wait_for_file``) or on
process exit with a timeout; lease expiry uses a small real TTL, and the resuming
process polls the lease (``wait_for_lease``) until it has expired.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from eleanor_cloud.backends.local import LocalBackend
from eleanor_cloud.models import StageStatus
from eleanor_cloud.store import StateStore
from tests.engine.taskdefs import DemoState, finish, ran, wait_for_file

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def start(action: str, store: Path, workdir: Path, cwd: Path, *extra: str) -> subprocess.Popen[str]:
    cwd.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "tests.engine.worker", action, str(store), str(workdir), *extra],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def reader(store: Path) -> StateStore:
    return StateStore(LocalBackend(store, fsync=False))


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    store, workdir = tmp_path / "store", tmp_path / "work"
    workdir.mkdir()
    return store, workdir


def test_sigkill_mid_stage_then_another_process_resumes(
    dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    store, workdir = dirs
    (workdir / "block-s3").touch()
    first = start("run", store, workdir, tmp_path / "host-a", "--ttl", "1", "--skew", "0")
    try:
        wait_for_file(workdir / "ready-s3")
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=30)  # reaps it and closes its pipes
    assert first.returncode == -signal.SIGKILL
    interrupted = reader(store).load("job", "s3", DemoState)
    assert interrupted.status is StageStatus.RUNNING and interrupted.attempts == 1
    (workdir / "block-s3").unlink()

    second = start(
        "run", store, workdir, tmp_path / "host-b", "--ttl", "1", "--skew", "0", "--wait", "30"
    )
    rc, summary = finish(second)
    assert rc == 0, summary
    assert summary["status"] == "COMPLETE"
    a, b = first.pid, second.pid
    assert ran(workdir, "s1") == {a} and ran(workdir, "s2") == {a}  # not re-run
    assert ran(workdir, "s3") == {a, b}
    assert ran(workdir, "s4") == {b} and ran(workdir, "s5") == {b}
    s3 = reader(store).load("job", "s3", DemoState)
    assert s3.attempts == 2 == len(s3.history)
    assert s3.history[0].end_status is StageStatus.RETRY
    assert s3.history[0].message.startswith("interrupted:")
    assert s3.history[1].end_status is StageStatus.COMPLETE
    assert s3.result is not None and s3.result.value == 2
    lease = reader(store).load_lease("job")
    assert lease is not None and lease.value.epoch == 2 and lease.value.released


def test_sigstopped_zombie_is_fenced_and_stops_with_lease_lost(
    dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    store, workdir = dirs
    (workdir / "block-s2").touch()
    # The zombie neither renews nor keeps a local deadline (either would be the first
    # to notice): this test proves the storage fence, not the renewer or the deadline.
    zombie = start(
        "run", store, workdir, tmp_path / "host-a", "--ttl", "1", "--skew", "0", "--stalled"
    )
    try:
        wait_for_file(workdir / "ready-s2")
        zombie.send_signal(signal.SIGSTOP)
        (workdir / "block-s2").unlink()
        successor = start(
            "run", store, workdir, tmp_path / "host-b", "--ttl", "1", "--skew", "0", "--wait", "30"
        )
        rc, summary = finish(successor)
        assert rc == 0, summary
        assert summary["status"] == "COMPLETE"
        snapshot = {
            n: (r.revision, r.writer, r.epoch)
            for n, r in reader(store).load_task_records("job", DemoState).items()
        }
        lease = reader(store).load_lease("job")
        (workdir / "go-s2").touch()
    finally:
        zombie.send_signal(signal.SIGCONT)
    rc, outcome = finish(zombie)
    assert rc == 3 and outcome["error"] == "LeaseLost", outcome
    final = {
        n: (r.revision, r.writer, r.epoch)
        for n, r in reader(store).load_task_records("job", DemoState).items()
    }
    assert final == snapshot
    assert {writer.split("/")[1] for _, writer, _ in final.values()} == {str(successor.pid)}
    assert {epoch for _, _, epoch in final.values()} == {2}
    assert reader(store).load_lease("job") == lease
    # the zombie did try to write after waking up, and every such write was refused
    log = (workdir / f"writes-{zombie.pid}.log").read_text().splitlines()
    s2_writes = [line for line in log if line.startswith("job/s2.json")]
    assert s2_writes[0] == "job/s2.json Create ok"  # its RUNNING, before the pause
    assert s2_writes[1:] and all(not line.endswith(" ok") for line in s2_writes[1:])
    assert ran(workdir, "s3") == {successor.pid}


def test_cancel_from_another_process_stops_the_running_holder(
    dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    store, workdir = dirs
    (workdir / "block-s3").touch()
    runner = start("run", store, workdir, tmp_path / "host-a", "--cancel-check", "0.05")
    try:
        wait_for_file(workdir / "ready-s3")
        rc, canceled = finish(start("cancel", store, workdir, tmp_path / "ops"))
        assert rc == 0 and canceled["status"] == "CANCELED"
    except BaseException:
        runner.kill()
        runner.communicate(timeout=30)
        raise
    rc, summary = finish(runner)
    assert rc == 0, summary
    assert summary["status"] == "CANCELED"
    assert [s["status"] for s in summary["stages"]] == [
        "COMPLETE",
        "COMPLETE",
        "CANCELED",
        "CANCELED",
        "CANCELED",
    ]
    assert not ran(workdir, "s4") and not ran(workdir, "s5")
    s3 = reader(store).load("job", "s3", DemoState)
    assert s3.attempts == 1 == len(s3.history)
    assert s3.history[0].end_status is StageStatus.CANCELED
    assert "noticed the cancel" in s3.history[0].message


def test_two_processes_at_once_one_runs_the_other_gets_lease_held(
    dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    store, workdir = dirs
    (workdir / "block-s1").touch()
    procs = [start("run", store, workdir, tmp_path / f"host-{i}") for i in range(2)]
    try:
        wait_for_file(workdir / "ready-s1")
        winner_pid = int((workdir / "ready-s1").read_text())
        loser = next(p for p in procs if p.pid != winner_pid)
        rc, outcome = finish(loser)
        assert rc == 4 and outcome["error"] == "LeaseHeld", outcome
        (workdir / "go-s1").touch()
        winner = next(p for p in procs if p.pid == winner_pid)
        rc, summary = finish(winner)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                proc.communicate(timeout=30)
    assert rc == 0 and summary["status"] == "COMPLETE"
    for stage in ("s1", "s2", "s3", "s4", "s5"):
        assert ran(workdir, stage) == {winner_pid}
