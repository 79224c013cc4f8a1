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
from eleanor_cloud.engine import BaseStage, StageContext, TaskEngine

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
