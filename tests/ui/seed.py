"""Tasks for the dashboard tests, made by running real tasks with TaskEngine.

``seed(store)`` leaves: two COMPLETE ETL tasks (a records stage with failures among
them), one ERROR whose message is hostile HTML, one with odd (valid) id characters
that needed a retry, a RUNNING one (stopped after its first stage), a CANCELED one, a
CREATED one (bound, never run), and a fanned-out one. ``ATTEMPTS`` is what each task's
timeline must draw.
"""

from __future__ import annotations

from typing import Any

import eleanor_cloud as ec
from eleanor_cloud.clock import utc_now
from eleanor_cloud.engine import Backoff, BaseStage, StageContext, TaskEngine, cancel_task
from eleanor_cloud.engine.fanout import Shard
from eleanor_cloud.engine.indexing import IndexWriter
from eleanor_cloud.models import RecordStatus
from eleanor_cloud.store.records import TaskManifest

HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)>"
HOSTILE_HOLDER = "<b>evil</b>host/1/x"
ODD_ID = "Odd.id_v2--x.y"
ERROR_ID = "etl-err"

# task id -> (overall status, attempts drawn on its timeline)
EXPECTED: dict[str, tuple[str, int]] = {
    "etl-001": ("COMPLETE", 3),
    "etl-002": ("COMPLETE", 3),
    ERROR_ID: ("ERROR", 3),  # extract ok, transform fails twice (max_attempts=2)
    ODD_ID: ("COMPLETE", 4),  # transform fails once, then succeeds
    "run-1": ("RUNNING", 1),
    "cxl-1": ("CANCELED", 0),
    "new-1": ("CREATED", 0),
    "fan-1": ("COMPLETE", 1),
}


class UiState(ec.BaseStageState[ec.SimpleRecordsResult]):
    pass


class Extract(BaseStage[UiState]):
    name = "extract"

    def run(self, state: UiState, ctx: StageContext[UiState]) -> Any:
        return ec.SimpleRecordsResult(total_count=40, success_count=40, message="extracted")


class Transform(BaseStage[UiState]):
    """A records stage over 40 records (every 7th fails); ``fail_first`` attempts raise."""

    name = "transform"

    def __init__(self, fail_first: int = 0, message: str = "boom") -> None:
        super().__init__()
        self.fail_first, self.message = fail_first, message

    def run(self, state: UiState, ctx: StageContext[UiState]) -> Any:
        if ctx.attempt <= self.fail_first:
            raise RuntimeError(self.message)

        def read(cursor: Any, limit: int) -> ec.Page:
            start = cursor or 0
            end = min(start + limit, 40)
            items = [{"id": f"r{i:03d}", "v": i} for i in range(start, end)]
            return ec.Page(items, cursor=end if end < 40 else None, total=40)

        for batch in ctx.records(read, batch_size=10, checkpoint_every=0, tolerate_failures=True):
            for item in batch:
                if item["v"] % 7 == 3:
                    batch.fail(item, "bad <b>value</b>")
                else:
                    batch.ok(item)
        return None


class Load(BaseStage[UiState]):
    name = "load"

    def run(self, state: UiState, ctx: StageContext[UiState]) -> Any:
        return ctx.result_of("transform")


class Fan(BaseStage[UiState]):
    name = "fan"

    def plan(self, state: UiState, ctx: StageContext[UiState]) -> Any:
        return [Shard(f"s{i}", {"lo": i * 5}) for i in range(3)]

    def run(self, state: UiState, ctx: StageContext[UiState]) -> None:
        lo = ctx.shard.spec["lo"]

        def read(cursor: Any, limit: int) -> ec.Page:
            return ec.Page([{"id": f"f{lo + i}"} for i in range(5)], cursor=None, total=5)

        for batch in ctx.records(read, batch_size=5, checkpoint_every=0):
            for item in batch:
                batch.report(item, RecordStatus.SUCCESS)


def _engine(
    store: ec.StateStore, task_id: str, stages: list[Any], **kw: Any
) -> TaskEngine[UiState]:
    return TaskEngine(task_id, stages, UiState, store, backoff=Backoff(initial=0, jitter=0), **kw)


def seed(store: ec.StateStore) -> None:
    for task_id in ("etl-001", "etl-002"):
        _engine(store, task_id, [Extract(), Transform(), Load()]).run()
    _engine(
        store,
        ERROR_ID,
        [Extract(), Transform(fail_first=9, message=HOSTILE), Load()],
        max_attempts=2,
    ).run()
    _engine(
        store, ODD_ID, [Extract(), Transform(fail_first=1), Load()], holder=HOSTILE_HOLDER
    ).run()

    holder: list[TaskEngine[UiState]] = []

    class StopAfter(BaseStage[UiState]):
        name = "first"

        def run(self, state: UiState, ctx: StageContext[UiState]) -> Any:
            holder[0].request_stop("seeded as RUNNING")
            return None

    holder.append(_engine(store, "run-1", [StopAfter(), Load()]))
    holder[0].run()

    store.create_manifest(
        TaskManifest(
            task_id="cxl-1",
            stages=("extract", "load"),
            state_class="tests.ui.seed.UiState",
            created_at="2026-12-01T00:00:00.000000Z",
        )
    )
    cancel_task(store, "cxl-1")
    store.create_manifest(
        TaskManifest(
            task_id="new-1",
            stages=("extract", "load"),
            state_class="tests.ui.seed.UiState",
            created_at="2026-12-01T00:00:00.000000Z",
            metadata={"owner": HOSTILE},
        )
    )
    # Bound by hand (for the hostile metadata): mark it as the engine's bind does.
    IndexWriter(store, "new-1", utc_now).created()
    fan = _engine(store, "fan-1", [Fan()])
    fan.run()  # plans the shards and waits for them
    for shard in ("s0", "s1", "s2"):
        fan.run_shard("fan", shard)
    fan.run()  # joins
