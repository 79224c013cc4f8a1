"""Subprocess worker for the task index's crash tests.

    python -m tests.engine.index_worker STORE_DIR TASK_ID [--kill-at POINT]

Runs the 2-stage task TASK_ID on a local-directory store. ``--kill-at`` SIGKILLs the
process at one of the index's crash windows:

- ``marked-COMPLETE``: right after the COMPLETE marker's PUT, before the state write
  that makes the task COMPLETE;
- ``unmark-RUNNING``: after that state write, right before the RUNNING marker's DELETE.
"""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

from eleanor_cloud.backends.base import Version, WriteMode
from eleanor_cloud.backends.local import LocalBackend
from eleanor_cloud.engine import TaskEngine
from eleanor_cloud.store import StateStore
from eleanor_cloud.testing.conformance import CountingBackend
from tests.engine.taskdefs import DemoState, FnStage


class KillingBackend(CountingBackend):
    def __init__(self, inner: LocalBackend, kill_at: str | None) -> None:
        super().__init__(inner)
        self.kill_at = kill_at

    def write(self, key: str, data: bytes, mode: WriteMode) -> Version:
        version = super().write(key, data, mode)
        if self.kill_at == "marked-COMPLETE" and key.endswith("/_index/status/COMPLETE/" + TASK):
            os.kill(os.getpid(), signal.SIGKILL)
        return version

    def delete(self, key: str, if_version: Version | None = None) -> None:
        if self.kill_at == "unmark-RUNNING" and key.endswith("/_index/status/RUNNING/" + TASK):
            os.kill(os.getpid(), signal.SIGKILL)
        super().delete(key, if_version)


TASK = ""


def main() -> int:
    global TASK  # noqa: PLW0603 (set once, before any write)
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("task_id")
    parser.add_argument("--kill-at", choices=["marked-COMPLETE", "unmark-RUNNING"])
    args = parser.parse_args()
    TASK = args.task_id
    backend = KillingBackend(LocalBackend(Path(args.store), fsync=False), args.kill_at)
    store = StateStore(backend, "runs")
    stages = [FnStage("a", lambda s, c: None), FnStage("b", lambda s, c: None)]
    # A short TTL so the next process takes a killed holder's lease over quickly.
    engine = TaskEngine(args.task_id, stages, DemoState, store, lease_ttl=2.0, wait_for_lease=30.0)
    print(engine.run().status.value)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
