"""The engine's process scenarios on S3 (the moto HTTP server on 127.0.0.1): SIGKILL
mid-stage and resume in another process, a SIGSTOPped zombie fenced by its successor,
cancel from another process while a stage runs; and ``TaskEngine.interrupt`` over HTTP.

The same scenarios run on a local directory in ``test_processes.py``; here every
conditional write is an HTTP ``If-Match`` / ``If-None-Match`` PUT. The workers are
``tests.engine.worker`` processes; waiting is on marker files polled with bounded
deadlines (``wait_for_file``) or on process exit with a timeout. Lease expiry uses a
small real TTL, and the resuming process polls the lease until it has expired.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eleanor_cloud.engine import StageContext, TaskEngine
from eleanor_cloud.models import StageStatus
from eleanor_cloud.store import StateStore, open_store
from tests.engine.taskdefs import DemoState, FnStage, Out, finish, ran, wait_for_file

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


class Workers:
    """Starts worker processes against one S3 store; kills any left at teardown."""

    def __init__(self, url: str, endpoint: str, workdir: Path, tmp_path: Path) -> None:
        self.url, self.endpoint, self.workdir, self.tmp_path = url, endpoint, workdir, tmp_path
        self.started: list[subprocess.Popen[str]] = []

    def start(self, action: str, host: str, *extra: str) -> subprocess.Popen[str]:
        cwd = self.tmp_path / host
        cwd.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.engine.worker",
                action,
                self.url,
                str(self.workdir),
                "--endpoint",
                self.endpoint,
                *extra,
            ],
            cwd=cwd,
            env=env,
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
    return f"s3://{s3_bucket}/pfx"


@pytest.fixture
def reader(url: str, moto_server_url: str) -> StateStore:
    return open_store(url, endpoint_url=moto_server_url)


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


def test_sigkill_mid_stage_on_s3_then_another_process_resumes(
    workers: Workers, reader: StateStore, workdir: Path
) -> None:
    (workdir / "block-s3").touch()
    first = workers.start("run", "host-a", "--ttl", "1", "--skew", "0")
    wait_for_file(workdir / "ready-s3")
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    assert first.returncode == -signal.SIGKILL
    interrupted = reader.load("job", "s3", DemoState)
    assert interrupted.status is StageStatus.RUNNING and interrupted.attempts == 1
    (workdir / "block-s3").unlink()

    second = workers.start("run", "host-b", "--ttl", "1", "--skew", "0", "--wait", "30")
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
    assert s3.result is not None and s3.result.value == 2
    records = reader.load_task_records("job", DemoState)
    assert {r.epoch for r in records.values()} == {2}  # the successor fenced every stage
    lease = reader.load_lease("job")
    assert lease is not None and lease.value.epoch == 2 and lease.value.released


def test_sigstopped_zombie_on_s3_is_fenced_and_stops_with_lease_lost(
    workers: Workers, reader: StateStore, workdir: Path
) -> None:
    (workdir / "block-s2").touch()
    # The zombie never renews (its renewer would otherwise be the first to notice):
    # this proves the storage fence (S3 If-Match), not the renewer.
    zombie = workers.start("run", "host-a", "--ttl", "1", "--skew", "0", "--stalled")
    try:
        wait_for_file(workdir / "ready-s2")
        zombie.send_signal(signal.SIGSTOP)
        (workdir / "block-s2").unlink()
        successor = workers.start("run", "host-b", "--ttl", "1", "--skew", "0", "--wait", "30")
        rc, summary = finish(successor)
        assert rc == 0, summary
        assert summary["status"] == "COMPLETE"
        snapshot = {
            n: (r.revision, r.write_id, r.epoch)
            for n, r in reader.load_task_records("job", DemoState).items()
        }
        lease = reader.load_lease("job")
        (workdir / "go-s2").touch()
    finally:
        zombie.send_signal(signal.SIGCONT)
    rc, outcome = finish(zombie)
    assert rc == 3 and outcome["error"] == "LeaseLost", outcome

    final = reader.load_task_records("job", DemoState)
    assert {n: (r.revision, r.write_id, r.epoch) for n, r in final.items()} == snapshot
    assert {r.writer.split("/")[1] for r in final.values()} == {str(successor.pid)}
    assert {r.epoch for r in final.values()} == {2}
    assert all(r.value.status is StageStatus.COMPLETE for r in final.values())
    assert reader.load_lease("job") == lease
    # The zombie did try to write after waking up, and S3 refused every such write.
    log = (workdir / f"writes-{zombie.pid}.log").read_text().splitlines()
    s2_writes = [line for line in log if line.startswith("pfx/job/s2.json")]
    assert s2_writes[0] == "pfx/job/s2.json Create ok"  # its RUNNING, before the pause
    assert s2_writes[1:] and all(line.endswith(" Conflict") for line in s2_writes[1:])
    assert ran(workdir, "s3") == {successor.pid}


def test_cancel_from_another_process_on_s3_stops_the_running_holder(
    workers: Workers, reader: StateStore, workdir: Path
) -> None:
    (workdir / "block-s3").touch()
    runner = workers.start("run", "host-a", "--cancel-check", "0.05")
    wait_for_file(workdir / "ready-s3")
    rc, canceled = finish(workers.start("cancel", "ops"))
    assert rc == 0 and canceled["status"] == "CANCELED"
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
    s3 = reader.load("job", "s3", DemoState)
    assert s3.status is StageStatus.CANCELED
    assert s3.attempts == 1 == len(s3.history)
    assert s3.history[0].end_status is StageStatus.CANCELED
    assert "noticed the cancel" in s3.history[0].message
    lease = reader.load_lease("job")
    assert lease is not None and lease.value.released


def test_interrupt_mid_stage_on_s3_and_resume(
    url: str, moto_server_url: str, reader: StateStore
) -> None:
    """TaskEngine.interrupt over HTTP: the If-Match write of the interrupted attempt
    lands, the stage's late outcome does not, and a fresh engine resumes the task."""
    started, go = threading.Event(), threading.Event()

    def block(state: DemoState, ctx: StageContext[DemoState]) -> Out:
        started.set()
        if not go.wait(30):
            raise TimeoutError("never told to go")
        return Out(value=ctx.attempt)

    def quick(state: DemoState, ctx: StageContext[DemoState]) -> Out:
        return Out(value=ctx.attempt)

    store = open_store(url, endpoint_url=moto_server_url)
    engine = TaskEngine("job", [FnStage("s1", quick), FnStage("s2", block)], DemoState, store)
    outcome: list[Any] = []
    worker = threading.Thread(target=lambda: outcome.append(engine.run()), daemon=True)
    worker.start()
    assert started.wait(30), "s2 did not start"
    assert engine.interrupt("spot reclaim") is True
    recorded = reader.load_record("job", "s2", DemoState)
    assert recorded.value.status is StageStatus.RETRY
    assert [h.message for h in recorded.value.history] == ["interrupted: spot reclaim"]
    lease = reader.load_lease("job")
    assert lease is not None and lease.value.released
    go.set()
    worker.join(30)
    assert not worker.is_alive() and outcome, "run() did not return"
    assert outcome[0].next_stage == "s2" and not outcome[0].done
    assert reader.load_record("job", "s2", DemoState).write_id == recorded.write_id

    again = TaskEngine(
        "job",
        [FnStage("s1", quick), FnStage("s2", quick)],
        DemoState,
        open_store(url, endpoint_url=moto_server_url),
    )
    assert again.run().status is StageStatus.COMPLETE
    s2 = reader.load("job", "s2", DemoState)
    assert s2.attempts == 2 == len(s2.history)
    assert [h.end_status for h in s2.history] == [StageStatus.RETRY, StageStatus.COMPLETE]
