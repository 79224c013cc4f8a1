"""The engine on the obstore backend over the moto HTTP server, in real processes:
SIGKILL mid-stage and resume in another process, two processes racing for one task,
and a SIGSTOPped zombie fenced by its successor's conditional writes.

The same scenarios run on boto3 in ``tests/engine/test_s3_scenarios.py``; here every
conditional write is an obstore ``PUT`` with ``If-None-Match``/``If-Match``. Waiting is
on marker files polled with bounded deadlines or on process exit with a timeout.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from eleanor_cloud.backends.obstore import ObstoreBackend
from eleanor_cloud.models import StageStatus
from eleanor_cloud.store import StateStore, open_store
from tests.engine.taskdefs import DemoState, finish, ran, wait_for_file

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


class Workers:
    """Starts workers on one obstore store; kills any left at teardown."""

    def __init__(self, url: str, endpoint: str, workdir: Path, tmp_path: Path) -> None:
        self.url, self.endpoint, self.workdir, self.tmp_path = url, endpoint, workdir, tmp_path
        self.started: list[subprocess.Popen[str]] = []

    def start(self, host: str, *extra: str) -> subprocess.Popen[str]:
        cwd = self.tmp_path / host
        cwd.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.obstore.worker",
                self.url,
                str(self.workdir),
                "--endpoint",
                self.endpoint,
                *extra,
            ],
            cwd=cwd,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.started.append(proc)
        return proc

    def cleanup(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()  # SIGKILL ends a SIGSTOPped process too
            proc.communicate(timeout=30)


@pytest.fixture
def url(s3_bucket: str) -> str:
    return f"obstore+s3://{s3_bucket}/pfx"


@pytest.fixture
def reader(url: str, moto_server_url: str) -> StateStore:
    store = open_store(url, endpoint_url=moto_server_url)
    assert isinstance(store.backend, ObstoreBackend)
    return store


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def workers(url: str, moto_server_url: str, workdir: Path, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(url, moto_server_url, workdir, tmp_path)
    try:
        yield pool
    finally:
        pool.cleanup()


def test_sigkill_mid_stage_then_another_process_resumes(
    workers: Workers, reader: StateStore, workdir: Path
) -> None:
    (workdir / "block-s3").touch()
    first = workers.start("host-a", "--ttl", "1", "--skew", "0")
    wait_for_file(workdir / "ready-s3")
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    assert first.returncode == -signal.SIGKILL
    interrupted = reader.load("job", "s3", DemoState)
    assert interrupted.status is StageStatus.RUNNING and interrupted.attempts == 1
    (workdir / "block-s3").unlink()

    second = workers.start("host-b", "--ttl", "1", "--skew", "0", "--wait", "30")
    rc, summary = finish(second)
    assert rc == 0, summary
    assert summary["status"] == "COMPLETE"
    a, b = first.pid, second.pid
    assert ran(workdir, "s1") == {a} and ran(workdir, "s2") == {a}  # not re-run
    assert ran(workdir, "s3") == {a, b}
    assert ran(workdir, "s4") == {b} and ran(workdir, "s5") == {b}
    s3 = reader.load("job", "s3", DemoState)
    assert s3.attempts == 2 == len(s3.history)
    assert s3.history[0].end_status is StageStatus.RETRY
    assert s3.history[0].message.startswith("interrupted:")
    assert s3.history[1].end_status is StageStatus.COMPLETE
    records = reader.load_task_records("job", DemoState)
    assert {r.epoch for r in records.values()} == {2}  # the successor fenced every stage
    lease = reader.load_lease("job")
    assert lease is not None and lease.value.epoch == 2 and lease.value.released


def test_two_processes_race_for_one_task_and_one_runs_it(
    workers: Workers, reader: StateStore, workdir: Path
) -> None:
    (workdir / "block-s1").touch()
    procs = [workers.start(f"host-{i}") for i in range(2)]
    wait_for_file(workdir / "ready-s1")
    winner_pid = int((workdir / "ready-s1").read_text())
    loser = next(p for p in procs if p.pid != winner_pid)
    rc, outcome = finish(loser)
    assert rc == 4 and outcome["error"] == "LeaseHeld", outcome
    (workdir / "go-s1").touch()
    winner = next(p for p in procs if p.pid == winner_pid)
    rc, summary = finish(winner)
    assert rc == 0 and summary["status"] == "COMPLETE", summary
    for stage in ("s1", "s2", "s3", "s4", "s5"):
        assert ran(workdir, stage) == {winner_pid}
    records = reader.load_task_records("job", DemoState)
    assert {r.writer.split("/")[1] for r in records.values()} == {str(winner_pid)}


def test_sigstopped_zombie_is_fenced_and_stops_with_lease_lost(
    workers: Workers, reader: StateStore, workdir: Path
) -> None:
    (workdir / "block-s2").touch()
    # The zombie neither renews nor keeps a local deadline: this proves the storage
    # fence (obstore's If-Match PUTs), not the renewer.
    zombie = workers.start("host-a", "--ttl", "1", "--skew", "0", "--stalled")
    try:
        wait_for_file(workdir / "ready-s2")
        zombie.send_signal(signal.SIGSTOP)
        (workdir / "block-s2").unlink()
        successor = workers.start("host-b", "--ttl", "1", "--skew", "0", "--wait", "30")
        rc, summary = finish(successor)
        assert rc == 0, summary
        snapshot = {
            n: (r.revision, r.write_id, r.epoch)
            for n, r in reader.load_task_records("job", DemoState).items()
        }
        (workdir / "go-s2").touch()
    finally:
        zombie.send_signal(signal.SIGCONT)
    rc, outcome = finish(zombie)
    assert rc == 3 and outcome["error"] == "LeaseLost", outcome
    final = reader.load_task_records("job", DemoState)
    assert {n: (r.revision, r.write_id, r.epoch) for n, r in final.items()} == snapshot
    log = (workdir / f"writes-{zombie.pid}.log").read_text().splitlines()
    s2_writes = [line for line in log if line.startswith("pfx/job/s2.json")]
    assert s2_writes[0] == "pfx/job/s2.json Create ok"  # its RUNNING, before the pause
    assert s2_writes[1:] and all(line.endswith(" Conflict") for line in s2_writes[1:])
