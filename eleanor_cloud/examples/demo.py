"""The demo task: four stages over generated records, deterministic given a seed.

::

    generate   make ``records`` values from ``random.Random(seed)``      -> state.values
    validate   a value divisible by 10 is malformed (fails)             -> state.valid
    transform  valid values; those above 9000 are deferred (unprocessed) -> state.processed
    publish    the task's SimpleRecordsResult: success / fail / unprocessed counts

Each stage reads the earlier stages' states through ``ctx.state_of`` (all stages share
one state class), works in batches with a short pause per batch (standing in for I/O,
so a crash can land mid-stage), and reports progress through an optional callback.

``crash_at`` names a stage that kills its own process with SIGKILL halfway through
its records: nothing is written on the way out, exactly like a lost container. Run
the task again and the engine skips the COMPLETE stages, counts the interrupted attempt
as failed (it stays in the history) and runs the stage again.

Use it from your own code or from the CLI::

    eleanor-cloud demo --crash-at transform; eleanor-cloud demo
    eleanor-cloud run eleanor_cloud.examples.demo:factory --task-id my-demo
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from pydantic import Field

from eleanor_cloud.models import BaseStageState, SimpleRecordsResult

if TYPE_CHECKING:
    from eleanor_cloud.engine import BaseStage, StageContext, TaskEngine
    from eleanor_cloud.store.state_store import StateStore

__all__ = [
    "DEFAULT_RECORDS",
    "DEFAULT_SEED",
    "STAGES",
    "DemoState",
    "build_demo",
    "expected_result",
    "factory",
]

STAGES = ("generate", "validate", "transform", "publish")
DEFAULT_SEED = 7
DEFAULT_RECORDS = 240
BATCH = 20
DEFERRED_ABOVE = 9000

ProgressCallback = Callable[[str, int, int], None]


class DemoState(BaseStageState[SimpleRecordsResult]):
    """The demo's shared state; each stage fills the fields it owns."""

    seed: int = Field(default=0, description="Seed the records were generated from")
    values: list[int] = Field(default=[], description="generate: the record values")
    valid: list[int] = Field(default=[], description="validate: indexes of valid records")
    processed: list[int] = Field(default=[], description="transform: indexes processed")
    deferred: list[int] = Field(default=[], description="transform: indexes left for later")


def generate_values(seed: int, count: int) -> list[int]:
    """The records: ``count`` values in [0, 9999], the same for the same seed."""
    rng = random.Random(seed)
    return [rng.randint(0, 9999) for _ in range(count)]


def is_malformed(value: int) -> bool:
    return value % 10 == 0


def is_deferred(value: int) -> bool:
    return value > DEFERRED_ABOVE


def expected_result(
    seed: int = DEFAULT_SEED, records: int = DEFAULT_RECORDS
) -> SimpleRecordsResult:
    """What the demo's publish stage reports, computed directly (for checks and docs)."""
    values = generate_values(seed, records)
    fail = sum(1 for v in values if is_malformed(v))
    unprocessed = sum(1 for v in values if not is_malformed(v) and is_deferred(v))
    return SimpleRecordsResult(
        total_count=records,
        success_count=records - fail - unprocessed,
        fail_count=fail,
        unprocessed_count=unprocessed,
        message=f"published {records - fail - unprocessed} records",
    )


def _stage_classes() -> dict[str, type[BaseStage[DemoState]]]:
    # Built on first use so importing this module does not import the engine.
    from eleanor_cloud.engine import BaseStage

    class DemoStage(BaseStage[DemoState]):
        """Batches with progress reports, a pause per batch, and an optional crash."""

        def __init__(
            self,
            *,
            work_delay: float,
            progress: ProgressCallback | None,
            crash: bool,
            on_crash: Callable[[str], None] | None,
        ) -> None:
            super().__init__(expected_duration=max(1.0, 20 * work_delay))
            self.work_delay = work_delay
            self.progress = progress
            self.crash = crash
            self.on_crash = on_crash

        def batches(self, total: int) -> Iterator[range]:
            """Yield index ranges of the work; crash halfway if asked to."""
            for start in range(0, total, BATCH):
                if self.crash and start >= total // 2:
                    self._die()
                yield range(start, min(start + BATCH, total))
                # Stands in for the I/O a real stage does; it is what makes a crash land
                # mid-stage with part of the work done.
                time.sleep(self.work_delay)
                if self.progress is not None:
                    self.progress(self.name, min(start + BATCH, total), total)
            if self.progress is not None and total == 0:
                self.progress(self.name, 0, 0)

        def _die(self) -> None:
            if self.on_crash is not None:
                self.on_crash(self.name)
            # SIGKILL: no cleanup, no final write, the lease is left to expire, exactly
            # as when a container is killed or a Lambda times out.
            os.kill(os.getpid(), signal.SIGKILL)

    class Generate(DemoStage):
        name = "generate"

        def __init__(self, *, seed: int, records: int, **kw: Any) -> None:
            super().__init__(**kw)
            self.seed = seed
            self.records = records

        def run(self, state: DemoState, ctx: StageContext[DemoState]) -> SimpleRecordsResult:
            values = generate_values(self.seed, self.records)
            kept: list[int] = []
            for chunk in self.batches(len(values)):
                kept.extend(values[i] for i in chunk)
            state.seed = self.seed
            state.values = kept
            return SimpleRecordsResult(
                total_count=len(kept),
                success_count=len(kept),
                message=f"generated {len(kept)} records (seed {self.seed})",
            )

    class Validate(DemoStage):
        name = "validate"

        def run(self, state: DemoState, ctx: StageContext[DemoState]) -> SimpleRecordsResult:
            values = ctx.state_of("generate").values
            valid: list[int] = []
            for chunk in self.batches(len(values)):
                valid.extend(i for i in chunk if not is_malformed(values[i]))
            state.valid = valid
            failed = len(values) - len(valid)
            return SimpleRecordsResult(
                total_count=len(values),
                success_count=len(valid),
                fail_count=failed,
                message=f"{failed} malformed records",
            )

    class Transform(DemoStage):
        name = "transform"

        def run(self, state: DemoState, ctx: StageContext[DemoState]) -> SimpleRecordsResult:
            values = ctx.state_of("generate").values
            valid = ctx.state_of("validate").valid
            processed: list[int] = []
            deferred: list[int] = []
            for chunk in self.batches(len(valid)):
                for position in chunk:
                    index = valid[position]
                    (deferred if is_deferred(values[index]) else processed).append(index)
            state.processed = processed
            state.deferred = deferred
            return SimpleRecordsResult(
                total_count=len(valid),
                success_count=len(processed),
                unprocessed_count=len(deferred),
                message=f"{len(deferred)} records deferred",
            )

    class Publish(DemoStage):
        name = "publish"

        def run(self, state: DemoState, ctx: StageContext[DemoState]) -> SimpleRecordsResult:
            total = len(ctx.state_of("generate").values)
            failed = total - len(ctx.state_of("validate").valid)
            transform = ctx.state_of("transform")
            published = 0
            for chunk in self.batches(len(transform.processed)):
                published += len(chunk)
            return SimpleRecordsResult(
                total_count=total,
                success_count=published,
                fail_count=failed,
                unprocessed_count=len(transform.deferred),
                message=f"published {published} records",
            )

    return {"generate": Generate, "validate": Validate, "transform": Transform, "publish": Publish}


def build_demo(
    task_id: str,
    store: StateStore,
    *,
    seed: int = DEFAULT_SEED,
    records: int = DEFAULT_RECORDS,
    work_delay: float = 0.025,
    crash_at: str | None = None,
    progress: ProgressCallback | None = None,
    on_crash: Callable[[str], None] | None = None,
    lease_ttl: float = 2.0,
    wait_for_lease: float = 10.0,
    **engine_options: Any,
) -> TaskEngine[DemoState]:
    """The demo task's engine.

    The lease TTL is short (2 s) so that after ``crash_at`` killed a run, the next run
    takes over within seconds; ``wait_for_lease`` makes that next run wait for the dead
    holder's lease to expire instead of failing with ``LeaseHeld``.
    """
    from eleanor_cloud.engine import Backoff, TaskEngine

    if crash_at is not None and crash_at not in STAGES:
        raise ValueError(f"crash_at must be one of {', '.join(STAGES)}, got {crash_at!r}")
    classes = _stage_classes()
    common: dict[str, Any] = {"work_delay": work_delay, "progress": progress, "on_crash": on_crash}
    stages: list[BaseStage[DemoState]] = []
    for name in STAGES:
        kw = dict(common, crash=crash_at == name)
        if name == "generate":
            kw.update(seed=seed, records=records)
        stages.append(classes[name](**kw))
    # A short backoff: the demo's only failures are the crashes it was asked for.
    engine_options.setdefault("backoff", Backoff(initial=0.2, max_delay=1.0))
    return TaskEngine(
        task_id,
        stages,
        DemoState,
        store,
        lease_ttl=lease_ttl,
        wait_for_lease=wait_for_lease,
        **engine_options,
    )


def factory(task_id: str, store: StateStore) -> TaskEngine[DemoState]:
    """``MODULE:FACTORY`` for ``eleanor-cloud run`` / ``rollback --factory``: the demo."""
    return build_demo(task_id, store)
