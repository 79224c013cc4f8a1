"""Task definitions shared by the engine tests and their subprocess workers.

They live in an importable module (not ``__main__``) because the manifest records the
state class's dotted path: every process running a task must name it the same way.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from eleanor_cloud.engine import BaseStage, StageContext
from eleanor_cloud.models import BaseStageState


class Out(BaseModel):
    """The result type of the test tasks."""

    value: int = 0
    note: str = ""


class Other(BaseModel):
    """A result type that is not ``Out``."""

    other: str = "x"


class DemoState(BaseStageState[Out]):
    """Shared state: one user field."""

    counter: int = 0


class FnStage(BaseStage[DemoState]):
    """A stage whose body is a function, for short tests."""

    def __init__(
        self,
        name: str,
        fn: Callable[[DemoState, StageContext[DemoState]], Any],
        *,
        rollback: Callable[[DemoState, StageContext[DemoState]], None] | None = None,
        expected_duration: float | None = None,
    ) -> None:
        super().__init__(name, expected_duration=expected_duration)
        self.fn = fn
        self._rollback = rollback
        self.calls = 0

    def run(self, state: DemoState, ctx: StageContext[DemoState]) -> Any:
        self.calls += 1
        return self.fn(state, ctx)

    def rollback(self, state: DemoState, ctx: StageContext[DemoState]) -> None:
        if self._rollback is not None:
            self._rollback(state, ctx)


def wait_for_file(path: Path, timeout: float = 30.0) -> None:
    """Poll for a file with a bounded deadline (the tests' only way to wait)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout}s")
        time.sleep(0.01)


class FileStage(BaseStage[DemoState]):
    """Records each run as a side-effect file; can block at a chosen stage.

    ``workdir/ran-<name>-<pid>`` proves which process ran the stage. If ``workdir/
    block-<name>`` exists the stage writes ``workdir/ready-<name>`` and then waits for
    ``workdir/go-<name>`` (bounded), so a test can kill, pause or cancel it mid-stage.
    """

    def __init__(self, name: str, workdir: Path) -> None:
        super().__init__(name)
        self.workdir = workdir

    def run(self, state: DemoState, ctx: StageContext[DemoState]) -> Out:
        (self.workdir / f"ran-{self.name}-{os.getpid()}").write_text(str(ctx.attempt))
        if (self.workdir / f"block-{self.name}").exists():
            (self.workdir / f"ready-{self.name}").write_text(str(os.getpid()))
            go = self.workdir / f"go-{self.name}"
            deadline = time.monotonic() + 60
            while not go.exists():
                if ctx.cancelled:
                    raise RuntimeError("noticed the cancel")
                if time.monotonic() > deadline:
                    raise TimeoutError("never told to go")
                time.sleep(0.01)
        state.counter += 1
        return Out(value=ctx.attempt, note=self.name)


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, dict[str, Any]]:
    """Wait for a worker process and parse the JSON summary on its last stdout line."""
    out, err = proc.communicate(timeout=timeout)
    try:
        return proc.returncode, json.loads(out.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise AssertionError(f"worker failed (rc={proc.returncode}): {err}") from None


def ran(workdir: Path, stage: str) -> set[int]:
    """Which attempts of ``stage`` left their side-effect marker in ``workdir``."""
    return {int(p.name.rsplit("-", 1)[1]) for p in workdir.glob(f"ran-{stage}-*")}
