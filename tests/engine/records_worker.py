"""A worker process for the records crash tests: one records stage over N records.

    python -m tests.engine.records_worker STORE WORKDIR [--endpoint URL] [--records N]
        [--batch B] [--kill-after-checkpoint K] [--kill-in-batch K:J]

Every processed record appends ``<pid> <attempt> <batch key> <id>`` to
``WORKDIR/effects`` (a side effect outside the store). ``--kill-after-checkpoint K``
SIGKILLs the process right after its K-th progress write landed (a batch boundary);
``--kill-in-batch K:J`` after processing J records of batch K (0-based), before it is
committed. Prints the summary as JSON on its last line.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
from pathlib import Path
from typing import Any

import eleanor_cloud as ec
from eleanor_cloud.backends.base import ObjectBackend, Version, WriteMode
from eleanor_cloud.backends.local import LocalBackend
from eleanor_cloud.engine import Backoff, BaseStage, StageContext, TaskEngine
from eleanor_cloud.store import StateStore, open_store
from eleanor_cloud.testing.conformance import CountingBackend
from tests.engine.taskdefs import wait_for_file


class RState(ec.BaseStageState[ec.SimpleRecordsResult]):
    pass


class KillAfterCheckpoint(CountingBackend):
    def __init__(self, inner: ObjectBackend, after: int | None) -> None:
        super().__init__(inner)
        self.after, self.seen = after, 0

    def write(self, key: str, data: bytes, mode: WriteMode) -> Version:
        version = super().write(key, data, mode)
        if key.endswith("/progress.json"):
            self.seen += 1
            # the first progress write starts the attempt; checkpoints come after it
            if self.after is not None and self.seen == self.after + 1:
                os.kill(os.getpid(), signal.SIGKILL)
        return version


class Stage(BaseStage[RState]):
    name = "load"

    def __init__(
        self,
        n: int,
        batch: int,
        effects: Path,
        kill_in: tuple[int, int] | None,
        pause_in: int | None = None,
    ) -> None:
        super().__init__()
        self.pause_in = pause_in
        self.rows = [{"id": f"r{i:04d}"} for i in range(n)]
        self.batch, self.effects, self.kill_in = batch, effects, kill_in

    def read(self, cursor: Any, limit: int) -> ec.Page:
        start = cursor or 0
        items = self.rows[start : start + limit]
        end = start + len(items)
        return ec.Page(items, cursor=end if end < len(self.rows) else None, total=len(self.rows))

    def run(self, state: RState, ctx: StageContext[RState]) -> None:
        for index, batch in enumerate(
            ctx.records(self.read, batch_size=self.batch, checkpoint_every=0)
        ):
            if self.pause_in == index and ctx.attempt == 1:
                # Hold here (a test freezes the process meanwhile) until told to go.
                (self.effects.parent / "paused").write_text(str(os.getpid()))
                wait_for_file(self.effects.parent / "go", timeout=60)
            for done, item in enumerate(batch):
                if self.kill_in == (index, done):
                    os.kill(os.getpid(), signal.SIGKILL)
                with self.effects.open("a") as fh:
                    fh.write(f"{os.getpid()} {ctx.attempt} {batch.key} {item['id']}\n")
                batch.ok(item)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("workdir")
    parser.add_argument("--endpoint", default=None)
    parser.add_argument("--records", type=int, default=50)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--kill-after-checkpoint", type=int, default=None)
    parser.add_argument("--kill-in-batch", default=None)
    parser.add_argument("--pause-in-batch", type=int, default=None)
    args = parser.parse_args()
    kill_in = tuple(int(x) for x in args.kill_in_batch.split(":")) if args.kill_in_batch else None
    if args.store.startswith("s3://"):
        opened = open_store(args.store, endpoint_url=args.endpoint)
        backend: ObjectBackend = opened.backend
        prefix = opened.prefix
    else:
        backend, prefix = LocalBackend(Path(args.store), fsync=False), ""
    store = StateStore(KillAfterCheckpoint(backend, args.kill_after_checkpoint), prefix)
    effects = Path(args.workdir) / "effects"
    stage = Stage(args.records, args.batch, effects, kill_in, args.pause_in_batch)  # type: ignore[arg-type]
    engine = TaskEngine(
        "job",
        [stage],
        RState,
        store,
        lease_ttl=1.0,
        clock_skew_tolerance=0.0,
        wait_for_lease=30.0,
        backoff=Backoff(initial=0, jitter=0),
        max_attempts=10,
    )
    print(json.dumps(engine.run().to_dict()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
