"""Subprocess worker for the multi-process engine tests.

    python -m tests.engine.worker run|cancel STORE WORKDIR [--ttl S] [--skew S]
        [--renew S] [--wait S] [--cancel-check S] [--endpoint URL]

STORE is a local directory or ``s3://bucket/prefix`` (``--endpoint``: the S3 endpoint,
e.g. the moto server). Runs the 5-stage FileStage task ``job`` (or cancels it),
logs every backend write attempt and its outcome to ``WORKDIR/writes-<pid>.log``, and
prints the summary as JSON. Exit codes: 0 done/stopped, 3 LeaseLost, 4 LeaseHeld.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from eleanor_cloud.backends.base import Create, ObjectBackend, Version, WriteMode
from eleanor_cloud.backends.local import LocalBackend
from eleanor_cloud.engine import TaskEngine, cancel_task, delete_task
from eleanor_cloud.errors import LeaseHeld, LeaseLost
from eleanor_cloud.store import StateStore, open_store
from eleanor_cloud.testing.conformance import CountingBackend
from tests.engine.taskdefs import DemoState, FileStage, wait_for_file

STAGES = ["s1", "s2", "s3", "s4", "s5"]


class LoggingBackend(CountingBackend):
    """Wraps a backend; appends ``<key> <mode> ok|<error>`` per write attempt.

    The pass-through comes from the shipped ``CountingBackend`` (its counts go unused).
    """

    def __init__(self, inner: ObjectBackend, log: Path, workdir: Path | None = None) -> None:
        super().__init__(inner)
        self._log_path = log
        self._workdir = workdir

    def _pause_before_create(self, key: str, mode: WriteMode) -> None:
        """With ``workdir/block-create-<stage>``: stop right before creating that stage's
        object (the lease was checked already), until ``go-create-<stage>`` appears."""
        if self._workdir is None or not isinstance(mode, Create):
            return
        stage = key.rsplit("/", 1)[-1].removesuffix(".json")
        if not (self._workdir / f"block-create-{stage}").exists():
            return
        (self._workdir / f"ready-create-{stage}").write_text(str(os.getpid()))
        wait_for_file(self._workdir / f"go-create-{stage}", timeout=60)

    def write(self, key: str, data: bytes, mode: WriteMode) -> Version:
        self._pause_before_create(key, mode)
        try:
            version = super().write(key, data, mode)
        except Exception as exc:
            self._note(f"{key} {type(mode).__name__} {type(exc).__name__}")
            raise
        self._note(f"{key} {type(mode).__name__} ok")
        return version

    def _note(self, line: str) -> None:
        with self._log_path.open("a") as fh:
            fh.write(line + "\n")


def stall_lease_holder() -> None:
    """Simulate a holder frozen between its lease check and its write.

    A SIGSTOPped holder's monotonic clock keeps running, so on waking its local lease
    deadline stops it before it writes. The fault this simulates is the narrow one the
    deadline cannot catch (frozen right after the check): no renewals, no local
    deadline, so only the storage fence stands between its writes and the successor.
    """
    from eleanor_cloud.engine.lease import LeaseManager

    LeaseManager.start_renewing = lambda self: None  # type: ignore[method-assign]
    LeaseManager._held_until = lambda self, sent: None  # type: ignore[method-assign]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("action", choices=["run", "cancel", "delete"])
    parser.add_argument("store")
    parser.add_argument("workdir")
    parser.add_argument("--ttl", type=float, default=60.0)
    parser.add_argument("--skew", type=float, default=5.0)
    parser.add_argument("--renew", type=float, default=None)
    parser.add_argument("--wait", type=float, default=0.0)
    parser.add_argument("--cancel-check", type=float, default=5.0)
    parser.add_argument("--endpoint", default=None)
    parser.add_argument("--stalled", action="store_true")
    args = parser.parse_args()
    if args.stalled:
        stall_lease_holder()
    workdir = Path(args.workdir)
    log = workdir / f"writes-{os.getpid()}.log"
    if args.store.startswith("s3://"):
        opened = open_store(args.store, endpoint_url=args.endpoint)
        store = StateStore(LoggingBackend(opened.backend, log, workdir), opened.prefix)
    else:
        local = LocalBackend(Path(args.store), fsync=False)
        store = StateStore(LoggingBackend(local, log, workdir))
    if args.action == "cancel":
        print(json.dumps(cancel_task(store, "job").to_dict()))
        return 0
    if args.action == "delete":
        try:
            count = delete_task(
                store,
                "job",
                lease_ttl=args.ttl,
                clock_skew_tolerance=args.skew,
                wait_for_lease=args.wait,
            )
        except LeaseHeld as exc:
            print(json.dumps({"error": "LeaseHeld", "message": str(exc)}))
            return 4
        print(json.dumps({"deleted": count}))
        return 0
    engine = TaskEngine(
        "job",
        [FileStage(n, workdir) for n in STAGES],
        DemoState,
        store,
        lease_ttl=args.ttl,
        clock_skew_tolerance=args.skew,
        renew_interval=args.renew,
        wait_for_lease=args.wait,
        cancel_check_interval=args.cancel_check,
    )
    try:
        summary = engine.run()
    except LeaseLost as exc:
        print(json.dumps({"error": "LeaseLost", "message": str(exc)}))
        return 3
    except LeaseHeld as exc:
        print(json.dumps({"error": "LeaseHeld", "message": str(exc)}))
        return 4
    print(json.dumps(summary.to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
