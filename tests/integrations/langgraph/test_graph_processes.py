"""A real LangGraph graph across processes, on S3 over the moto HTTP server.

Interrupted (``interrupt()``) or crashed (``os._exit`` in a node) in one process, the
graph resumes in another from what the first saved; two processes resuming one thread
at once: exactly one advances it, the other gets ``CheckpointConflict`` (exit 3), and
the thread holds the winner's answer.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import eleanor_cloud as ec
from eleanor_cloud.integrations.langgraph import ObjectStoreSaver

ROOT = Path(__file__).resolve().parents[3]


def _env(moto_server_url: str, bucket: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "MOTO_ENDPOINT": moto_server_url, "BUCKET": bucket, **extra}


def _app(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integrations.langgraph._graph_app", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _result(proc: subprocess.Popen[str]) -> tuple[int, dict[str, Any] | None]:
    out, err = proc.communicate(timeout=60)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    assert lines or proc.returncode != 0, err
    return proc.returncode, (json.loads(lines[-1]) if lines else None)


@pytest.fixture
def saver(s3_store: ec.StateStore) -> ObjectStoreSaver:
    return ObjectStoreSaver(s3_store)


def test_interrupted_in_one_process_resumes_in_another(
    moto_server_url: str, s3_bucket: str, saver: ObjectStoreSaver
) -> None:
    env = _env(moto_server_url, s3_bucket)
    code, first = _result(_app(env, "start", "thread-1"))
    assert code == 0 and first == {
        "status": "interrupted",
        "interrupts": [{"question": "approve 'write about object stores'?"}],
    }
    code, second = _result(_app(env, "resume", "thread-1", "yes"))
    assert code == 0 and second is not None
    assert second["state"]["answer"] == "yes"
    assert second["state"]["ran"] == ["plan", "approve", "act"]  # plan ran once, in the first
    latest = saver.get_tuple({"configurable": {"thread_id": "thread-1"}})
    assert latest is not None and latest.checkpoint["channel_values"]["answer"] == "yes"


def test_a_process_killed_mid_node_is_resumed_by_another(
    moto_server_url: str, s3_bucket: str
) -> None:
    env = _env(moto_server_url, s3_bucket)
    assert _result(_app(env, "start", "t-crash"))[0] == 0
    code, _ = _result(_app({**env, "CRASH_IN_ACT": "1"}, "resume", "t-crash", "ok"))
    assert code == 9  # died inside `act`, after approve's step was saved
    code, done = _result(_app(env, "continue", "t-crash"))
    assert code == 0 and done is not None
    assert done["state"]["ran"] == ["plan", "approve", "act"]  # only `act` ran again
    assert done["state"]["answer"] == "ok"


class _Barrier:
    """Lets ``parties`` processes through together: each connects and waits for 'go'."""

    def __init__(self, parties: int) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.parties = parties
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conns = []
        try:
            for _ in range(self.parties):
                conn, _ = self.sock.accept()
                conn.recv(16)
                conns.append(conn)
            for conn in conns:
                conn.sendall(b"go\n")
        finally:
            for conn in conns:
                conn.close()
            self.sock.close()


def test_two_processes_resuming_one_thread_one_wins_the_other_gets_a_conflict(
    moto_server_url: str, s3_bucket: str, saver: ObjectStoreSaver
) -> None:
    env = _env(moto_server_url, s3_bucket)
    assert _result(_app(env, "start", "t-race"))[0] == 0
    barrier = _Barrier(2)
    racing = {"SYNC_PORT": str(barrier.port)}
    procs = {
        answer: _app(_env(moto_server_url, s3_bucket, **racing), "resume", "t-race", answer)
        for answer in ("alice", "bob")
    }
    results = {answer: _result(proc) for answer, proc in procs.items()}
    barrier.thread.join(timeout=30)
    codes = sorted(code for code, _ in results.values())
    assert codes == [0, 3], results
    (winner,) = [a for a, (code, _) in results.items() if code == 0]
    (loser,) = [a for a, (code, _) in results.items() if code == 3]
    conflict = results[loser][1]
    assert conflict is not None and conflict["status"] == "conflict"
    assert "thread 't-race'" in conflict["message"]
    assert "Another process resumed this thread" in conflict["message"]
    latest = saver.get_tuple({"configurable": {"thread_id": "t-race"}})
    assert latest is not None
    assert latest.checkpoint["channel_values"]["answer"] == winner
    assert latest.checkpoint["channel_values"]["ran"] == ["plan", "approve", "act"]
    history = list(saver.list({"configurable": {"thread_id": "t-race", "checkpoint_ns": ""}}))
    answers = {t.checkpoint["channel_values"].get("answer") for t in history}
    assert loser not in answers  # the loser's refused checkpoint was not left behind
