"""Running the container runner as ECS does: a subprocess the test signals.

The test waits (bounded) for marker files a stage creates, or for a line the runner
logs, then signals the process, as ECS would on a stop or a Fargate Spot interruption.
"""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FACTORY = "tests.aws.taskmod:build_runner_engine"


def start(
    env: dict[str, str],
    task_id: str,
    grace: str | None = None,
    *,
    entry: str = "python-m",
    factory: str = FACTORY,
    debug: bool = False,
) -> subprocess.Popen[str]:
    """Start the runner on ``factory``: ``python -m eleanor_cloud.aws`` or the CLI
    (``debug``: with ``--debug``, so that it logs the runner's warnings too)."""
    if entry == "cli":
        cmd = [str(Path(sys.executable).parent / "eleanor-cloud")]
        cmd += ["--debug"] if debug else []
        cmd += ["run", factory, "--task-id", task_id]
        env = {**env, "ELEANOR_GRACE_SECONDS": grace} if grace is not None else env
    else:
        cmd = [sys.executable, "-m", "eleanor_cloud.aws", factory, "--task-id", task_id]
        cmd += ["--grace-seconds", grace] if grace is not None else []
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 60.0) -> None:
    """Poll (bounded) for the marker the stage creates; fail fast if the process died."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"runner exited {proc.returncode} before {path.name}:\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{path.name} did not appear within {timeout}s")
        time.sleep(0.01)


def read_until(
    proc: subprocess.Popen[str],
    needle: str,
    timeout: float = 60.0,
    collected: list[str] | None = None,
) -> threading.Thread:
    """Wait (bounded) until the runner logs ``needle`` on stderr; keep draining after
    (every line also goes to ``collected``, if given, until the process exits)."""
    assert proc.stderr is not None
    stream = proc.stderr
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)
            if collected is not None:
                collected.append(line)

    pumping = threading.Thread(target=pump, daemon=True)
    pumping.start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=deadline - time.monotonic())
        except queue.Empty:
            break
        seen.append(line)
        if needle in line:
            return pumping  # it ends at EOF, when the process exits
    proc.kill()
    pytest.fail(f"{needle!r} not logged within {timeout}s:\n{''.join(seen)}")
