"""The demo task: four stages over generated records, deterministic given a seed.

::

    generate   make ``records`` values from ``random.Random(seed)``        -> state.values
    validate   each value; one divisible by 10 is malformed: batch.fail     -> validate/output/
    transform  each valid record; a value above 9000 is deferred: batch.skip -> transform/output/
    publish    each transformed record; its result is the task's: the counts of all three

``generate`` is an ordinary stage: one step, its output in its state. The other three
are *records stages*: they read their input a page at a time from a cursor (an offset
into the previous stage's output) through ``ctx.records(...)``, report every record
(``batch.ok`` / ``batch.fail`` / ``batch.skip``), and the engine checkpoints the cursor
and the counts after every batch (``checkpoint_every=0``; the default is at most every
5 s). Each batch's output goes to a sink keyed by the batch's idempotency key
(:mod:`.sink`: one object per batch under ``<task>/<stage>/output/``, created only if
absent), so a batch offered again after a crash is written once. The counts of each
stage's ``SimpleRecordsResult`` are computed by the engine from the record statuses it
checkpointed; ``publish`` adds them up into the task's result (``expected_result``
computes the same figures directly from the seed). Failed and deferred records are
tolerated (``tolerate_failures=True``): the task completes and reports them.

``crash_at`` names a stage that kills its own process with SIGKILL halfway through
its records: nothing is written on the way out, exactly like a lost container. For
``transform`` that is at record 120 of 223, after 6 checkpoints. Run the task again:
the engine waits out the dead run's lease, skips the COMPLETE stages, counts the
interrupted attempt as failed (it stays in the history), and the next attempt resumes
at the last checkpoint: ``transform`` says so ("resuming at record 120 of 223") and
reads only the 103 records left.

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
    from eleanor_cloud.engine import BaseStage, Batch, Page, StageContext, TaskEngine
    from eleanor_cloud.engine.records import RecordsRun
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
Record = dict[str, Any]


class DemoState(BaseStageState[SimpleRecordsResult]):
    """The demo's shared state: generate's output (the records stages write theirs to
    the sink, since an attempt that resumes mid-stage did not see the earlier records)."""

    seed: int = Field(default=0, description="Seed the records were generated from")
    values: list[int] = Field(default=[], description="generate: the record values")


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


def offsets(records: list[Record]) -> Callable[[Any, int], Page]:
    """``read(cursor, limit)`` over a list: the cursor is the offset of the next page."""
    from eleanor_cloud.engine import Page

    def read(cursor: Any, limit: int) -> Page:
        start = int(cursor or 0)
        end = min(start + limit, len(records))
        return Page(
            records[start:end], cursor=end if end < len(records) else None, total=len(records)
        )

    return read


def _stage_classes(store: StateStore) -> dict[str, type[BaseStage[DemoState]]]:
    # Built on first use so importing this module does not import the engine.
    from eleanor_cloud.engine import BaseStage
    from eleanor_cloud.examples.sink import BatchSink

    class DemoStage(BaseStage[DemoState]):
        """Progress reports, a pause per batch, notes, and an optional crash."""

        def __init__(
            self,
            *,
            work_delay: float,
            progress: ProgressCallback | None,
            note: Callable[[str], None] | None,
            crash: bool,
            on_crash: Callable[[str], None] | None,
        ) -> None:
            super().__init__(expected_duration=max(1.0, 20 * work_delay))
            self.work_delay = work_delay
            self.progress = progress
            self.note = note
            self.crash = crash
            self.on_crash = on_crash

        def say(self, ctx: StageContext[DemoState], text: str) -> None:
            if self.note is not None:
                self.note(f"[{self.name}] {text}")
            else:
                ctx.logger.info("%s", text)

        def report(self, done: int, total: int) -> None:
            if self.progress is not None:
                self.progress(self.name, done, total)

        def pause(self) -> None:
            # Stands in for the I/O a real stage does; it is what makes a crash land
            # mid-stage with part of the work done.
            time.sleep(self.work_delay)

        def die(self) -> None:
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

        def batches(self, total: int) -> Iterator[range]:
            for start in range(0, total, BATCH):
                if self.crash and start >= total // 2:
                    self.die()
                yield range(start, min(start + BATCH, total))
                self.pause()
                self.report(min(start + BATCH, total), total)

    class RecordsStage(DemoStage):
        """A records stage: ``inputs`` page by page, ``handle`` per record, the output of
        each batch to this stage's sink; the engine computes the counts."""

        tolerate = True

        def inputs(self, ctx: StageContext[DemoState]) -> list[Record]:
            raise NotImplementedError

        def handle(self, record: Record, batch: Batch, out: list[Record]) -> None:
            raise NotImplementedError

        def run(self, state: DemoState, ctx: StageContext[DemoState]) -> SimpleRecordsResult | None:
            self.process(ctx)
            return None  # the engine's computed SimpleRecordsResult is the stage's result

        def process(self, ctx: StageContext[DemoState]) -> RecordsRun:
            records = self.inputs(ctx)
            sink = BatchSink(store, ctx.task_id, self.name)
            run: RecordsRun = ctx.records(
                offsets(records),
                batch_size=BATCH,
                checkpoint_every=0,  # a checkpoint after every batch (default: 5 s)
                tolerate_failures=self.tolerate,
            )
            batches = iter(run)  # loads the last checkpoint, if any
            self.announce(ctx, run, len(records))
            read = written = again = 0
            # next(), not a second iter(): a records run is iterated once per attempt.
            while (batch := next(batches, None)) is not None:
                if self.crash and run.progress.offered >= len(records) // 2:
                    self.say(ctx, self.checkpointed(run, len(records)))
                    self.die()
                out: list[Record] = []
                for record in batch:
                    self.handle(record, batch, out)
                if sink.put(batch, out):
                    written += 1
                else:
                    again += 1  # an earlier offer of this batch wrote it before a crash
                read += len(batch)
                self.pause()
                self.report(run.progress.offered + len(batch), len(records))
            result = run.result
            dedup = f"; {again} batch(es) were already in the sink" if again else ""
            self.say(
                ctx,
                f"this run processed {read} records ({written} batches to the sink{dedup}); "
                f"stage total: {result.success_count} ok, {result.fail_count} failed, "
                f"{result.unprocessed_count} unprocessed of {result.total_count}",
            )
            return run

        def announce(self, ctx: StageContext[DemoState], run: RecordsRun, total: int) -> None:
            """Say where this attempt starts when an earlier one left a checkpoint."""
            p = run.progress
            if p.offered == 0:
                return
            checkpoints = sum(a.checkpoints for a in p.attempts)
            by = [a.attempt for a in p.attempts if a.checkpoints]
            self.say(
                ctx,
                f"resuming at record {p.offered} of {total} from the last checkpoint "
                f"(checkpoint {checkpoints}"
                + (f", by attempt {by[-1]}" if by else "")
                + f"): {total - p.offered} records left",
            )
            self.report(p.offered, total)

        def checkpointed(self, run: RecordsRun, total: int) -> str:
            p = run.progress
            checkpoints = sum(a.checkpoints for a in p.attempts)
            return (
                f"at record {p.offered} of {total}; checkpoint {checkpoints} holds "
                f"the first {p.offered}"
            )

        def rollback(self, state: DemoState, ctx: StageContext[DemoState]) -> None:
            BatchSink(store, ctx.task_id, self.name).clear()

    class Validate(RecordsStage):
        name = "validate"

        def inputs(self, ctx: StageContext[DemoState]) -> list[Record]:
            values = ctx.state_of("generate").values
            return [{"id": f"r{i:05d}", "value": v} for i, v in enumerate(values)]

        def handle(self, record: Record, batch: Batch, out: list[Record]) -> None:
            if is_malformed(record["value"]):
                batch.fail(record, "malformed: the value is divisible by 10")
            else:
                batch.ok(record)
                out.append(record)

    class Transform(RecordsStage):
        name = "transform"

        def inputs(self, ctx: StageContext[DemoState]) -> list[Record]:
            return BatchSink(store, ctx.task_id, "validate").read_all()

        def handle(self, record: Record, batch: Batch, out: list[Record]) -> None:
            if is_deferred(record["value"]):
                batch.skip(record, f"deferred: the value is above {DEFERRED_ABOVE}")
            else:
                out.append({**record, "scaled": round(record["value"] / 9999, 4)})
                batch.ok(record)

    class Publish(RecordsStage):
        name = "publish"
        tolerate = False  # every transformed record must publish

        def inputs(self, ctx: StageContext[DemoState]) -> list[Record]:
            return BatchSink(store, ctx.task_id, "transform").read_all()

        def handle(self, record: Record, batch: Batch, out: list[Record]) -> None:
            out.append(record)
            batch.ok(record)

        def run(self, state: DemoState, ctx: StageContext[DemoState]) -> SimpleRecordsResult:
            published = self.process(ctx).result.success_count
            validated, transformed = ctx.result_of("validate"), ctx.result_of("transform")
            assert isinstance(validated, SimpleRecordsResult)
            assert isinstance(transformed, SimpleRecordsResult)
            return SimpleRecordsResult(
                total_count=validated.total_count,
                success_count=published,
                fail_count=validated.fail_count,
                unprocessed_count=transformed.unprocessed_count,
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
    note: Callable[[str], None] | None = None,
    on_crash: Callable[[str], None] | None = None,
    lease_ttl: float = 2.0,
    wait_for_lease: float = 10.0,
    **engine_options: Any,
) -> TaskEngine[DemoState]:
    """The demo task's engine.

    ``progress(stage, done, total)`` is called after each batch; ``note(text)`` gets a
    records stage's lines (where it resumes, what this run processed; without it they
    go to the stage's logger). The lease TTL is short (2 s) so that after ``crash_at``
    killed a run, the next run takes over within seconds; ``wait_for_lease`` makes that
    next run wait for the dead holder's lease to expire instead of failing with
    ``LeaseHeld``.
    """
    from eleanor_cloud.engine import Backoff, TaskEngine

    if crash_at is not None and crash_at not in STAGES:
        raise ValueError(f"crash_at must be one of {', '.join(STAGES)}, got {crash_at!r}")
    classes = _stage_classes(store)
    common: dict[str, Any] = {
        "work_delay": work_delay,
        "progress": progress,
        "note": note,
        "on_crash": on_crash,
    }
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
