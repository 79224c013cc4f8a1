"""Subprocess worker for the engine tests on the obstore backend.

    python -m tests.obstore.worker STORE_URL WORKDIR [--endpoint URL] [--ttl S]
        [--skew S] [--wait S] [--stalled]

STORE_URL is any store URL (``obstore+s3://bucket/prefix`` here); ``--endpoint`` is
passed as ``endpoint_url`` (the moto server). Runs the 5-stage FileStage task ``job``
of ``tests.engine.worker`` (whose marker files, write log and exit codes it keeps:
0 done, 3 LeaseLost, 4 LeaseHeld) and prints the summary as JSON. That worker opens
only ``s3://`` or a directory; this one opens whatever URL it is given.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from eleanor_cloud.engine import TaskEngine
from eleanor_cloud.errors import LeaseHeld, LeaseLost
from eleanor_cloud.store import StateStore, open_store
from tests.engine.taskdefs import DemoState, FileStage
from tests.engine.worker import STAGES, LoggingBackend, stall_lease_holder


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("workdir")
    parser.add_argument("--endpoint", default=None)
    parser.add_argument("--ttl", type=float, default=60.0)
    parser.add_argument("--skew", type=float, default=5.0)
    parser.add_argument("--wait", type=float, default=0.0)
    parser.add_argument("--stalled", action="store_true")
    args = parser.parse_args()
    if args.stalled:
        stall_lease_holder()
    workdir = Path(args.workdir)
    options = {"endpoint_url": args.endpoint} if args.endpoint else {}
    opened = open_store(args.store, **options)
    log = workdir / f"writes-{os.getpid()}.log"
    store = StateStore(LoggingBackend(opened.backend, log, workdir), opened.prefix)
    engine = TaskEngine(
        "job",
        [FileStage(n, workdir) for n in STAGES],
        DemoState,
        store,
        lease_ttl=args.ttl,
        clock_skew_tolerance=args.skew,
        wait_for_lease=args.wait,
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
