"""The fan-out Lambda tests' rig: sharded records stages on simulated time, and the
handler serving both functions of ``infra/statemachine/shard-fan-out.asl.json``.

Each batch works exactly 1 s on the clock the engine, the handler and the Lambda context
share (:mod:`tests.aws.sim`). An invocation has 5 s, 1 s of margin: a shard gets through
3 batches of 10 records per invocation (batches start at 4, 3, 2 s left; at 1 s < 1.7 s
it suspends), so a 50-record shard takes two invocations.
"""

from __future__ import annotations

from typing import Any

import eleanor_cloud as ec
from eleanor_cloud.aws import lambda_handler
from eleanor_cloud.aws.lambda_response import json_size
from eleanor_cloud.engine import BaseStage, EngineEvent, Page, Shard, StageContext, TaskEngine
from tests.aws import asl
from tests.aws.sim import SimContext, SimTime
from tests.aws.taskmod import TState

TIMEOUT, MARGIN = 5.0, 1.0
BUDGET = TIMEOUT - MARGIN
BATCH = 10
BUCKET = "state-bucket"
STAGE_ARN = "arn:aws:lambda:us-east-1:123456789012:function:stage-runner"
SHARD_ARN = "arn:aws:lambda:us-east-1:123456789012:function:shard-runner"
SHARD_RESPONSE_MAX = 4096  # a shard response is a few hundred bytes; never near 256 KiB


def definition() -> dict[str, Any]:
    """The fan-out state machine, with the template's substitutions filled in."""
    return asl.load(
        "shard-fan-out.asl.json",
        STAGE_ARN,
        ShardRunnerFunctionArn=SHARD_ARN,
        StateBucketName=BUCKET,
    )


class Sharded(BaseStage[TState]):
    """A fanned-out records stage: ``shards`` shards of ``per`` records each; every batch
    works 1 simulated second. Records in ``failing`` are reported as errors."""

    def __init__(
        self,
        name: str,
        sim: SimTime,
        *,
        shards: int,
        per: int,
        failing: frozenset[int] = frozenset(),
    ) -> None:
        super().__init__(name, expected_duration=1.0)
        self.sim, self.shards, self.per, self.failing = sim, shards, per, failing
        self.offered: list[tuple[str, int]] = []
        self.planned = 0

    def plan(self, state: TState, ctx: StageContext[TState]) -> list[Shard]:
        self.planned += 1
        return [
            Shard(f"{self.name}-{i}", {"lo": i * self.per, "hi": (i + 1) * self.per})
            for i in range(self.shards)
        ]

    def run(self, state: TState, ctx: StageContext[TState]) -> None:
        shard = ctx.shard
        lo, hi = shard.spec["lo"], shard.spec["hi"]

        def read(cursor: Any, limit: int) -> Page:
            start = lo if cursor is None else int(cursor)
            end = min(start + limit, hi)
            return Page(list(range(start, end)), cursor=end if end < hi else None, total=hi - lo)

        for batch in ctx.records(read, batch_size=BATCH):
            self.sim.sleep(1.0)  # the batch's work
            for item in batch:
                self.offered.append((shard.id, item))
                if item in self.failing:
                    batch.fail(item, "refused by the sink")
                else:
                    batch.ok(item)


class Quick(BaseStage[TState]):
    """A plain stage that works one simulated second."""

    def __init__(self, name: str, sim: SimTime) -> None:
        super().__init__(name, expected_duration=1.0)
        self.sim = sim

    def run(self, state: TState, ctx: StageContext[TState]) -> None:
        self.sim.sleep(1.0)


class Rig:
    """One task on a memory store; the handler serves both functions of the machine."""

    def __init__(
        self,
        task_id: str,
        stages: list[BaseStage[TState]],
        *,
        timeout: float = TIMEOUT,
        **engine: Any,
    ) -> None:
        self.task_id, self.stages, self.engine = task_id, stages, engine
        self.timeout = timeout
        self.sim = SimTime()
        self.store = ec.open_store("memory://")
        self.calls: list[tuple[str, dict[str, Any]]] = []  # (function, event)
        self.outputs: list[dict[str, Any]] = []
        self.events: list[EngineEvent] = []
        self.handler = lambda_handler(self.build, safety_margin=MARGIN, clock=self.sim.clock)

    def build(self, event: Any) -> TaskEngine[TState]:
        return TaskEngine(
            event["task_id"],
            self.stages,
            TState,
            self.store,
            clock=self.sim.clock,
            sleep=self.sim.sleep,
            on_event=self.events.append,
            **self.engine,
        )

    def invoke(self, function: str, event: Any) -> dict[str, Any]:
        self.calls.append((function, dict(event)))
        started = self.sim.now
        out = self.handler(event, SimContext(self.sim, self.timeout))
        # Never past the budget (remaining time - margin), lease watching included.
        assert self.sim.seconds_since(started) <= self.timeout - MARGIN, out
        if "shard" in event:
            assert "result" not in out and json_size(out) <= SHARD_RESPONSE_MAX, out
        self.outputs.append(out)
        return out

    def read_object(self, bucket: str, key: str) -> bytes:
        assert bucket == BUCKET
        return self.store.backend.read(key)[0]

    def execute(self, **options: Any) -> asl.Execution:
        return asl.run(
            definition(),
            {"task_id": self.task_id},
            self.invoke,
            on_wait=self.sim.sleep,
            read_object=self.read_object,
            **options,
        )

    def run_shard_loop(self, shard_event: dict[str, Any], **options: Any) -> asl.Execution:
        """One child of the map, alone: the item processor on one shard's item."""
        processor = definition()["States"]["RunShards"]["ItemProcessor"]
        event = {"task_id": self.task_id}
        item = {"event": event, "shard": shard_event}
        return asl.run(processor, item, self.invoke, on_wait=self.sim.sleep, **options)

    def shard_calls(self, stage: str) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for function, event in self.calls:
            if event.get("stage") == stage:
                assert function == SHARD_ARN
                out.setdefault(event["shard"], []).append(event)
        return out
