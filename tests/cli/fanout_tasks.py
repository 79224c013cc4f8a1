"""A user's task with a fanned-out stage, for the CLI tests (``tests.cli.fanout_tasks:build``).

Stage ``fan`` plans ``$FAN_SHARDS`` shards (default 4) of ``$FAN_PER`` records each
(default 25) and reports every record ``success``; ``after`` copies the joined result.
``$FAN_DELAY`` seconds of work per record (default 0) keep a run going long enough to
interrupt it; ``$FAN_LOG`` (a file) gets one line per record processed, so a test can
check that every record was processed exactly once over runs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import eleanor_cloud as ec
from eleanor_cloud.engine import Backoff, BaseStage, StageContext, TaskEngine
from eleanor_cloud.engine.fanout import Shard
from eleanor_cloud.models import RecordStatus


class FanState(ec.BaseStageState[ec.SimpleRecordsResult]):
    pass


class Fan(BaseStage[FanState]):
    name = "fan"

    def __init__(self, shards: int, per: int, delay: float, log: str | None) -> None:
        super().__init__()
        self.shards, self.per, self.delay, self.log = shards, per, delay, log
        self.on_record: Callable[[str, str], None] | None = None  # (shard, id), in-process

    def plan(self, state: FanState, ctx: StageContext[FanState]) -> Any:
        return [
            Shard(f"s{i}", {"lo": i * self.per, "hi": (i + 1) * self.per})
            for i in range(self.shards)
        ]

    def run(self, state: FanState, ctx: StageContext[FanState]) -> None:
        lo, hi = ctx.shard.spec["lo"], ctx.shard.spec["hi"]

        def read(cursor: Any, limit: int) -> ec.Page:
            start = lo if cursor is None else cursor
            end = min(start + limit, hi)
            items = [{"id": f"r{i:05d}"} for i in range(start, end)]
            return ec.Page(items, cursor=end if end < hi else None, total=hi - lo)

        for batch in ctx.records(read, batch_size=5, checkpoint_every=0):
            for item in batch:
                if self.delay:
                    time.sleep(self.delay)  # the record's work
                if self.log:
                    with open(self.log, "a", encoding="utf-8") as fh:
                        fh.write(item["id"] + "\n")
                batch.report(item, RecordStatus.SUCCESS)
                if self.on_record is not None:
                    self.on_record(ctx.shard.id, item["id"])


class After(BaseStage[FanState]):
    name = "after"

    def run(self, state: FanState, ctx: StageContext[FanState]) -> Any:
        return ctx.result_of("fan")


def fan_from_env() -> Fan:
    return Fan(
        int(os.environ.get("FAN_SHARDS", "4")),
        int(os.environ.get("FAN_PER", "25")),
        float(os.environ.get("FAN_DELAY", "0")),
        os.environ.get("FAN_LOG"),
    )


def build(task_id: str, store: ec.StateStore, fan: Fan | None = None) -> TaskEngine[FanState]:
    fan = fan or fan_from_env()
    return TaskEngine(
        task_id,
        [fan, After()],
        FanState,
        store,
        backoff=Backoff(initial=0, jitter=0),
        lease_ttl=5.0,
        clock_skew_tolerance=0.5,
    )
