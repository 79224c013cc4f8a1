"""Tasks run by the AWS adapter tests, in fresh processes (``tests.aws.taskmod:...``).

Each stage appends one line per started attempt to ``$ELEANOR_TEST_SIDE/<stage>.runs``
(so a test can count how often a stage's code ran, across processes) and creates the
marker ``<stage>.started.<attempt>`` a test waits for before signalling the process.
Stages work by sleeping: that is their *work* (a bounded duration), never a test's
means of synchronisation.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from eleanor_cloud import BaseStageState, RetryPolicy, SimpleRecordsResult, StateStore
from eleanor_cloud.aws import lambda_handler, store_from_env
from eleanor_cloud.engine import BaseStage, Page, Shard, StageContext, TaskEngine

SIDE_ENV = "ELEANOR_TEST_SIDE"
SLOW_ENV = "ELEANOR_TEST_SLOW_STAGE"  # this stage works SLOW_SECONDS instead
SLOW_SECONDS_ENV = "ELEANOR_TEST_SLOW_SECONDS"


class TState(BaseStageState[SimpleRecordsResult]):
    """The shared state: each stage leaves a note."""

    note: str = ""


class Step(BaseStage[TState]):
    """A stage that records that it ran, then works ``work`` seconds."""

    def __init__(
        self, name: str, *, work: float, expected: float | None, fail: bool = False
    ) -> None:
        super().__init__(name, expected_duration=expected)
        self.work = work
        self.fail = fail

    def run(self, state: TState, ctx: StageContext[TState]) -> SimpleRecordsResult | None:
        side = Path(os.environ[SIDE_ENV])
        with (side / f"{self.name}.runs").open("a") as runs:
            runs.write(f"{os.getpid()} {ctx.attempt}\n")
        (side / f"{self.name}.started.{ctx.attempt}").touch()
        work = self.work
        if os.environ.get(SLOW_ENV) == self.name:
            work = float(os.environ.get(SLOW_SECONDS_ENV, "60"))
        until = time.monotonic() + work
        while time.monotonic() < until:  # the stage's work: bounded, in small steps
            time.sleep(min(0.02, max(0.0, until - time.monotonic())))
        if self.fail:
            raise RuntimeError(f"{self.name} failed on purpose")
        state.note = f"{self.name} by {os.getpid()}"
        last = self.name in {"s5", "c"}
        return SimpleRecordsResult(total_count=1, success_count=1) if last else None


LAMBDA_STAGES = ("s1", "s2", "s3", "s4", "s5")


def build_lambda_engine(event: Mapping[str, Any]) -> TaskEngine[TState]:
    """Five stages expecting 1.0 s each and working ``event["work"]`` seconds.

    ``event["fail"]`` names a stage that raises; the task then ends in ERROR (no retry).
    ``lease_ttl`` and ``skew`` set the engine's lease TTL and clock-skew tolerance.
    """
    work = float(event.get("work", 0.4))
    stages = [
        Step(name, work=work, expected=1.0, fail=event.get("fail") == name)
        for name in LAMBDA_STAGES
    ]
    policy = RetryPolicy.NONE if event.get("fail") else RetryPolicy.STAGE
    return TaskEngine(
        str(event["task_id"]),
        stages,
        TState,
        store_from_env(),
        retry_policy=policy,
        lease_ttl=float(event.get("lease_ttl", 30.0)),
        clock_skew_tolerance=float(event.get("skew", 5.0)),
    )


handler = lambda_handler(build_lambda_engine)

RUNNER_STAGES = ("a", "b", "c")


def build_runner_engine(task_id: str, store: StateStore) -> TaskEngine[TState]:
    """The CLI/runner factory signature: three short stages (b can be made slow)."""
    stages = [
        Step("a", work=0.05, expected=None),
        Step("b", work=0.3, expected=None),
        Step("c", work=0.05, expected=None),
    ]
    # A long TTL: a restart that resumes at once proves the lease was released.
    return TaskEngine(
        task_id,
        stages,
        TState,
        store,
        retry_policy=RetryPolicy.STAGE,
        max_attempts=3,
        lease_ttl=120.0,
    )


HOLD_ENV = "ELEANOR_TEST_HOLD_BATCH"  # this batch position waits for <side>/r.release
RECORDS_COUNT, RECORDS_BATCH = 40, 5  # 8 batches
RECORDS_FAILING = frozenset({3, 27})  # reported error (tolerated)


class Numbers(BaseStage[TState]):
    """A records stage over 0..RECORDS_COUNT-1 from an offset cursor.

    Per batch it appends ``pid position key`` to ``r.started`` and creates
    ``r.batch.<position>.started`` when the batch is offered, and appends ``pid
    position id id ...`` to ``r.offered`` once the batch is reported. The batch at
    position ``$ELEANOR_TEST_HOLD_BATCH`` first waits (bounded) for ``r.release``: an
    external resource that is slow to answer, so a test can signal the process while
    that batch is in flight.
    """

    def read(self, cursor: Any, limit: int) -> Page:
        start = 0 if cursor is None else int(cursor)
        end = min(start + limit, RECORDS_COUNT)
        following = end if end < RECORDS_COUNT else None
        return Page(list(range(start, end)), cursor=following, total=RECORDS_COUNT)

    def run(self, state: TState, ctx: StageContext[TState]) -> None:
        side = Path(os.environ[SIDE_ENV])
        hold = os.environ.get(HOLD_ENV)
        batches = ctx.records(
            self.read, batch_size=RECORDS_BATCH, checkpoint_every=0, tolerate_failures=True
        )
        for batch in batches:
            with (side / f"{self.name}.started").open("a") as started:
                started.write(f"{os.getpid()} {batch.position} {batch.key}\n")
            (side / f"{self.name}.batch.{batch.position}.started").touch()
            if hold is not None and int(hold) == batch.position:
                until = time.monotonic() + 60
                while not (side / f"{self.name}.release").exists():
                    assert time.monotonic() < until, "the test never released the batch"
                    time.sleep(0.01)  # polling the external resource, bounded
            for item in batch:
                if item in RECORDS_FAILING:
                    batch.fail(item, "refused by the sink")
                else:
                    batch.ok(item)
            ids = " ".join(str(item) for item in batch)
            with (side / f"{self.name}.offered").open("a") as offered:
                offered.write(f"{os.getpid()} {batch.position} {ids}\n")


def build_records_engine(task_id: str, store: StateStore) -> TaskEngine[TState]:
    """The runner factory with a records stage between two short ones: a, r, c."""
    stages: list[BaseStage[TState]] = [
        Step("a", work=0.05, expected=None),
        Numbers("r"),
        Step("c", work=0.05, expected=None),
    ]
    return TaskEngine(
        task_id,
        stages,
        TState,
        store,
        retry_policy=RetryPolicy.STAGE,
        max_attempts=3,
        lease_ttl=120.0,
    )


SHARDS, SHARD_RECORDS = 3, 20  # a fanned-out stage "r": 3 shards of 20 records, 4 batches


class ShardedNumbers(BaseStage[TState]):
    """A fanned-out records stage: shard ``r-<i>`` holds records 20i..20i+19, read from
    an offset cursor in batches of 5. As :class:`Numbers`, per shard: the batch offered
    at position ``$ELEANOR_TEST_HOLD_BATCH`` creates ``r.<shard>.batch.<position>.started``
    and waits (bounded) for ``r.release``; every reported batch appends ``pid position
    id id ...`` to ``r.<shard>.offered``.
    """

    def plan(self, state: TState, ctx: StageContext[TState]) -> list[Shard]:
        return [
            Shard(f"r-{i}", {"lo": i * SHARD_RECORDS, "hi": (i + 1) * SHARD_RECORDS})
            for i in range(SHARDS)
        ]

    def run(self, state: TState, ctx: StageContext[TState]) -> None:
        side = Path(os.environ[SIDE_ENV])
        hold = os.environ.get(HOLD_ENV)
        shard = ctx.shard
        lo, hi = shard.spec["lo"], shard.spec["hi"]

        def read(cursor: Any, limit: int) -> Page:
            start = lo if cursor is None else int(cursor)
            end = min(start + limit, hi)
            return Page(list(range(start, end)), cursor=end if end < hi else None, total=hi - lo)

        for batch in ctx.records(read, batch_size=RECORDS_BATCH, checkpoint_every=0):
            (side / f"{self.name}.{shard.id}.batch.{batch.position}.started").touch()
            if hold is not None and int(hold) == batch.position:
                until = time.monotonic() + 60
                while not (side / f"{self.name}.release").exists():
                    assert time.monotonic() < until, "the test never released the batch"
                    time.sleep(0.01)  # polling the external resource, bounded
            for item in batch:
                batch.ok(item)
            ids = " ".join(str(item) for item in batch)
            with (side / f"{self.name}.{shard.id}.offered").open("a") as offered:
                offered.write(f"{os.getpid()} {batch.position} {ids}\n")


def build_sharded_engine(task_id: str, store: StateStore) -> TaskEngine[TState]:
    """The runner factory with a fanned-out stage between two short ones: a, r, c."""
    stages: list[BaseStage[TState]] = [
        Step("a", work=0.05, expected=None),
        ShardedNumbers("r"),
        Step("c", work=0.05, expected=None),
    ]
    return TaskEngine(task_id, stages, TState, store, lease_ttl=120.0)
