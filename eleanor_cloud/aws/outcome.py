"""How a container run ends: its exit code (see :mod:`eleanor_cloud.aws.runner`) and why."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eleanor_cloud.models import StageStatus

if TYPE_CHECKING:
    from eleanor_cloud.engine import EngineEvent, TaskSummary

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_STOPPED",
    "EXIT_WORK_LEFT",
    "RunOutcome",
    "exit_code_of",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_WORK_LEFT = 3
EXIT_STOPPED = 75
EXIT_INTERRUPTED = 76


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """How a container run ended: the exit code and why."""

    exit_code: int
    summary: TaskSummary | None
    signal: int | None = None
    interrupted: bool = False
    recorded_interruption: bool = False
    message: str = ""
    shard: Any = None  # a shard's run: its ShardSummary (``summary`` is then None)

    def exit(self) -> None:
        """Exit the process with :attr:`exit_code`.

        After an interruption the stage's code is still running on another thread:
        ``os._exit`` ends the process without waiting for it (nothing more may be
        written once the lease is released); stdio is flushed first.
        """
        if self.interrupted:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(OSError, ValueError):
                    stream.flush()
            logging.shutdown()
            os._exit(self.exit_code)
        sys.exit(self.exit_code)


def exit_code_of(
    summary: TaskSummary, signum: int | None, suspended: EngineEvent | None = None
) -> tuple[int, str]:
    """The exit code and message of a run that returned ``summary`` (not interrupted).

    ``signum``: the signal that asked it to stop, if any. ``suspended``: the
    ``stage_suspended`` event of a records stage that stopped at a batch boundary in
    this run (checkpointed; the stage stays RUNNING and the next run resumes it).
    """
    if summary.status is StageStatus.COMPLETE:
        return EXIT_OK, summary.message
    if summary.status in (StageStatus.ERROR, StageStatus.CANCELED):
        return EXIT_FAILED, summary.message
    if signum is None:
        return EXIT_WORK_LEFT, summary.message
    name = signal.Signals(signum).name
    if suspended is not None and suspended.stage_name == summary.next_stage:
        return EXIT_STOPPED, (
            f"stopped on {name} at a batch boundary of records stage "
            f"{suspended.stage_name!r} ({suspended.batches} batch(es) in this run, "
            "checkpointed); the next run resumes it at its cursor"
        )
    return EXIT_STOPPED, (
        f"stopped on {name} at a stage boundary; resume at stage {summary.next_stage!r}"
    )
