"""Record-level checkpoints in one process: batches, counts, retries of failed records,
suspension at a deadline or stop and resumption of the same attempt, bad input, and a
fenced-out holder that cannot move the cursor (issue 16)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import eleanor_cloud as ec
from eleanor_cloud.engine import Backoff, BaseStage, StageContext, TaskEngine
from eleanor_cloud.engine.progress import Progress
from eleanor_cloud.errors import CorruptState, InvalidState, LeaseLost
from eleanor_cloud.models import RecordStatus, SimpleRecordsResult, StageStatus
from eleanor_cloud.store import StateStore, documents
from tests.engine.conftest import CountingBackend, FakeClock

NO_WAIT = Backoff(initial=0, jitter=0)


class RState(ec.BaseStageState[SimpleRecordsResult]):
    pass


class Source:
    """``n`` records ``{"id": "r007", "v": 7}`` read from an integer cursor; counts reads."""

    def __init__(self, n: int) -> None:
        self.rows = [{"id": f"r{i:03d}", "v": i} for i in range(n)]
        self.reads: list[Any] = []
        self.looked_up: list[list[str]] = []

    def read(self, cursor: Any, limit: int) -> ec.Page:
        self.reads.append(cursor)
        start = cursor or 0
        items = self.rows[start : start + limit]
        end = start + len(items)
        return ec.Page(items, cursor=end if end < len(self.rows) else None, total=len(self.rows))

    def lookup(self, ids: list[str]) -> list[dict[str, Any]]:
        self.looked_up.append(list(ids))
        by_id = {r["id"]: r for r in self.rows}
        return [by_id[i] for i in ids]


class RecordsStage(BaseStage[RState]):
    """Processes every record with ``handle(item, ctx) -> RecordStatus``; logs each call."""

    def __init__(self, source: Source, handle: Any, *, name: str = "t", **options: Any) -> None:
        super().__init__(name, expected_duration=options.pop("expected_duration", None))
        self.source, self.handle, self.options = source, handle, options
        self.seen: list[tuple[int, str, str]] = []  # (attempt, batch key, record id)

    def run(self, state: RState, ctx: StageContext[RState]) -> None:
        options = {
            "lookup": self.source.lookup,
            "batch_size": 10,
            "checkpoint_every": 0,
            **self.options,
        }
        for batch in ctx.records(self.source.read, **options):
            for item in batch:
                self.seen.append((ctx.attempt, batch.key, item["id"]))
                status = self.handle(item, ctx)
                if status is not None:
                    batch.report(item, status, "bad" if status is RecordStatus.ERROR else "")


def ok(item: Any, ctx: Any) -> RecordStatus:
    return RecordStatus.SUCCESS


def engine(
    store: StateStore, stage: BaseStage[RState], clock: FakeClock, **kw: Any
) -> TaskEngine[RState]:
    return TaskEngine(
        "job", [stage], RState, store, clock=clock, sleep=clock.sleep, backoff=NO_WAIT, **kw
    )


def progress_of(store: StateStore) -> Progress:
    record = documents.load_progress(store, "job", "t", Progress)
    assert record is not None
    return record.value


def test_every_record_once_and_the_counts_computed(store: StateStore, clock: FakeClock) -> None:
    stage = RecordsStage(Source(95), ok)
    summary = engine(store, stage, clock).run()
    assert summary.status is StageStatus.COMPLETE
    state = store.load("job", "t", RState)
    assert state.result == SimpleRecordsResult(total_count=95, success_count=95)
    assert sorted(rid for _, _, rid in stage.seen) == [f"r{i:03d}" for i in range(95)]
    p = progress_of(store)
    assert p.exhausted and p.batches == 10 and p.chunks == () and not p.suspended


def test_a_checkpoint_is_one_write_after_a_batch_at_most_per_interval(
    backend: CountingBackend, store: StateStore, clock: FakeClock
) -> None:
    stage = RecordsStage(Source(100), ok, checkpoint_every=3600, checkpoint_records=30)
    engine(store, stage, clock).run()
    writes = [key for op, key in backend.log if op == "write" and key.endswith("progress.json")]
    # begin + after batches 3, 6, 9 (30 records each) + the final one after batch 10
    assert len(writes) == 5
    assert progress_of(store).attempts[-1].checkpoints == 4


def test_failed_records_are_re_offered_alone_on_the_next_attempt(
    store: StateStore, clock: FakeClock
) -> None:
    bad = {"r003", "r050", "r051"}

    def flaky(item: Any, ctx: Any) -> RecordStatus:
        return (
            RecordStatus.ERROR if item["id"] in bad and ctx.attempt == 1 else RecordStatus.SUCCESS
        )

    source = Source(60)
    stage = RecordsStage(source, flaky)
    summary = engine(store, stage, clock, max_attempts=3).run()
    assert summary.status is StageStatus.COMPLETE
    second = [rid for attempt, _, rid in stage.seen if attempt == 2]
    assert sorted(second) == sorted(bad), "only the error records are offered again"
    assert source.looked_up == [sorted(bad)]
    assert source.reads.count(0) == 0 and None in source.reads  # the source read once over
    state = store.load("job", "t", RState)
    assert state.result == SimpleRecordsResult(total_count=60, success_count=60)
    assert [h.end_status for h in state.history] == [StageStatus.RETRY, StageStatus.COMPLETE]
    assert "3 record(s) failed" in state.history[0].message


def test_unreported_and_skipped_records_are_unprocessed(
    store: StateStore, clock: FakeClock
) -> None:
    def some(item: Any, ctx: Any) -> RecordStatus | None:
        v = item["v"]
        if v % 10 == 0:
            return RecordStatus.ERROR
        if v % 10 == 1:
            return RecordStatus.UNPROCESSED
        return None if v % 10 == 2 else RecordStatus.SUCCESS

    stage = RecordsStage(Source(50), some, tolerate_failures=True)
    assert engine(store, stage, clock).run().status is StageStatus.COMPLETE
    result = store.load("job", "t", RState).result
    assert result == SimpleRecordsResult(
        total_count=50, success_count=35, fail_count=5, unprocessed_count=10
    )
    lines = [
        line
        for chunk in progress_of(store).chunks
        for line in documents.read_chunk(store, "job", "t", chunk.name, chunk.count)
    ]
    assert {line["status"] for line in lines} == {"error", "unprocessed"}
    assert sum(line["reason"] == "not reported" for line in lines) == 5


def test_a_deadline_suspends_the_attempt_and_the_next_run_resumes_it(
    store: StateStore, clock: FakeClock
) -> None:
    def slow(item: Any, ctx: Any) -> RecordStatus:
        clock.advance(0.1)  # a batch of 10 takes 1 s
        return RecordStatus.SUCCESS

    def runs() -> TaskEngine[RState]:
        return engine(store, RecordsStage(Source(100), slow, expected_duration=1.0), clock)

    slices = []
    for _ in range(10):
        summary = runs().run(time_budget=3.0)
        slices.append(progress_of(store).batches)
        if summary.done:
            break
        assert summary.status is StageStatus.RUNNING and "suspended" in (summary.message or "")
        assert progress_of(store).suspended
    assert summary.status is StageStatus.COMPLETE
    assert slices[0] < 10 and len(slices) > 1
    state = store.load("job", "t", RState)
    assert state.attempts == 1 and len(state.history) == 1, "one attempt, resumed, not retried"
    assert state.result == SimpleRecordsResult(total_count=100, success_count=100)
    assert progress_of(store).attempts[-1].slices == len(slices)


def test_a_stop_request_suspends_at_the_next_batch(store: StateStore, clock: FakeClock) -> None:
    holder: list[TaskEngine[RState]] = []

    def stop_at_25(item: Any, ctx: Any) -> RecordStatus:
        if item["v"] == 25:
            holder[0].request_stop("SIGTERM")
        return RecordStatus.SUCCESS

    holder.append(engine(store, RecordsStage(Source(60), stop_at_25), clock))
    summary = holder[0].run()
    assert not summary.done
    p = progress_of(store)
    assert p.suspended and p.cursor == 30 and p.success == 30  # the batch in hand finished
    stage = RecordsStage(Source(60), ok)
    assert engine(store, stage, clock).run().done
    assert next(rid for _, _, rid in stage.seen) == "r030"


def test_a_crash_re_offers_only_the_uncheckpointed_batches_with_the_same_keys(
    store: StateStore, clock: FakeClock
) -> None:
    def crash_in_batch_3(item: Any, ctx: Any) -> RecordStatus:
        if ctx.attempt == 1 and item["v"] == 34:
            raise RuntimeError("host lost")
        return RecordStatus.SUCCESS

    stage = RecordsStage(Source(60), crash_in_batch_3)
    assert engine(store, stage, clock, max_attempts=2).run().done
    first = [(k, r) for a, k, r in stage.seen if a == 1]
    again = [(k, r) for a, k, r in stage.seen if a == 2]
    offered_twice = {r for _, r in first} & {r for _, r in again}
    assert offered_twice == {f"r{i:03d}" for i in range(30, 35)}
    keys_first = {r: k for k, r in first}
    assert all(keys_first[r] == k for k, r in again if r in offered_twice), "same batch key"
    assert store.load("job", "t", RState).result == SimpleRecordsResult(
        total_count=60, success_count=60
    )


@pytest.mark.parametrize(
    ("read", "match"),
    [
        (lambda c, n: ec.Page([{"id": "a"}], cursor={1, 2}), "'cursor' is not JSON-serializable"),
        (lambda c, n: [{"id": "a"}], "must return a Page"),
        (lambda c, n: ec.Page([{"id": str(i)} for i in range(n + 1)]), "records for a limit"),
        (lambda c, n: ec.Page([{"id": "a"}, {"id": "a"}]), "same record id twice"),
        (lambda c, n: ec.Page([{"id": ""}]), "record id must be a string"),
    ],
)
def test_bad_pages_fail_the_attempt_naming_task_stage_and_field(
    store: StateStore, clock: FakeClock, read: Any, match: str
) -> None:
    class Bad(BaseStage[RState]):
        name = "t"

        def run(self, state: RState, ctx: StageContext[RState]) -> None:
            for batch in ctx.records(read, batch_size=3):
                for item in batch:
                    batch.ok(item)

    summary = engine(store, Bad(), clock, max_attempts=1).run()
    message = store.load("job", "t", RState).history[-1].message
    assert summary.status is StageStatus.ERROR and "InvalidState" in message
    assert match in message and "'t'" in message and "'job'" in message


def test_bad_reports_are_refused_and_nothing_checkpointed_is_lost(
    store: StateStore, clock: FakeClock
) -> None:
    calls = {"n": 0}

    class Liar(BaseStage[RState]):
        name = "t"

        def run(self, state: RState, ctx: StageContext[RState]) -> None:
            for batch in ctx.records(Source(40).read, batch_size=10, checkpoint_every=0):
                calls["n"] += 1
                for item in batch:
                    batch.ok(item)
                if calls["n"] == 2:
                    with pytest.raises(InvalidState, match="not in this batch"):
                        batch.ok("r999")
                    with pytest.raises(InvalidState, match="must be a RecordStatus"):
                        batch.report(batch.items[0], "success")  # type: ignore[arg-type]
                    raise RuntimeError("stop here")

    engine(store, Liar(), clock, max_attempts=1).run()
    p = progress_of(store)
    assert p.success == 10 and p.cursor == 10  # batch 1 stands, batch 2 was never committed


def test_a_corrupt_progress_object_is_reported_by_key(store: StateStore, clock: FakeClock) -> None:
    engine(store, RecordsStage(Source(20), ok), clock).run()
    key = "pfx/job/t/progress.json"
    store.backend.write(key, b'{"format": "eleanor.stage-progress/1"}', ec.OVERWRITE)
    with pytest.raises(CorruptState, match=r"pfx/job/t/progress\.json"):
        documents.load_progress(store, "job", "t", Progress)


def test_a_fenced_out_holder_cannot_move_the_cursor(
    store: StateStore, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The zombie's records run holds its progress record; a successor takes over (and
    fences the progress object); the zombie's next checkpoint is refused by the store.
    The zombie is frozen right after its lease check (no renewer, no local deadline), so
    what stops it must be the fence."""
    from eleanor_cloud.engine.lease import LeaseManager

    monkeypatch.setattr(LeaseManager, "start_renewing", lambda self: None)
    monkeypatch.setattr(LeaseManager, "_held_until", lambda self, sent: None)
    captured: dict[str, Any] = {}

    class Zombie(BaseStage[RState]):
        name = "t"

        def run(self, state: RState, ctx: StageContext[RState]) -> None:
            records = ctx.records(Source(50).read, batch_size=10, checkpoint_every=0)
            for n, batch in enumerate(records):
                for item in batch:
                    batch.ok(item)
                if n == 1:
                    captured["records"] = records
                    # a successor takes the task over while this holder is "paused"
                    clock.advance(100)
                    successor = engine(store, RecordsStage(Source(50), ok), clock)
                    captured["summary"] = successor.run()

    with pytest.raises(LeaseLost, match="progress was written by"):
        engine(store, Zombie(), clock, lease_ttl=10).run()
    assert captured["summary"].status is StageStatus.COMPLETE
    p = progress_of(store)
    assert p.success == 50 and p.exhausted
    record = documents.load_progress(store, "job", "t", Progress)
    assert record is not None and record.epoch == 2  # the successor's, not the zombie's
    assert json.loads(store.backend.read("pfx/job/t.json")[0])["epoch"] == 2


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n=st.integers(min_value=0, max_value=60),
    batch=st.integers(min_value=1, max_value=12),
    failing=st.sets(st.integers(min_value=0, max_value=59), max_size=15),
    crash_at=st.one_of(st.none(), st.integers(min_value=0, max_value=59)),
    every=st.integers(min_value=1, max_value=40),
)
def test_any_batching_failures_and_crash_end_with_every_record_once(
    n: int, batch: int, failing: set[int], crash_at: int | None, every: int
) -> None:
    """Records failing on the first attempt and a crash in it at any record: the final
    counts have every record exactly once, and what was offered again is only the
    failed records and the batches not yet checkpointed at the crash."""
    from eleanor_cloud.backends.memory import MemoryBackend

    clock = FakeClock()
    store = StateStore(MemoryBackend(), "pfx", clock=clock)

    def handle(item: Any, ctx: Any) -> RecordStatus:
        if ctx.attempt == 1 and item["v"] == crash_at:
            raise RuntimeError("crash")
        if ctx.attempt == 1 and item["v"] in failing:
            return RecordStatus.ERROR
        return RecordStatus.SUCCESS

    stage = RecordsStage(
        Source(n), handle, batch_size=batch, checkpoint_every=3600, checkpoint_records=every
    )
    summary = engine(store, stage, clock, max_attempts=5).run()
    assert summary.status is StageStatus.COMPLETE
    assert store.load("job", "t", RState).result == SimpleRecordsResult(
        total_count=n, success_count=n
    )
    first = [rid for attempt, _, rid in stage.seen if attempt == 1]
    later = [rid for attempt, _, rid in stage.seen if attempt > 1]
    assert sorted(set(first) | set(later)) == [f"r{i:03d}" for i in range(n)]
    again = set(first) & set(later)
    failed = {f"r{i:03d}" for i in failing if i < n}
    if crash_at is None or crash_at >= n:
        assert again == failed & set(first)
    else:
        # At most the records since the last checkpoint (fewer than ``every`` + a batch).
        unsaved = again - failed
        assert len(unsaved) < every + batch
        assert all(int(r[1:]) <= crash_at for r in unsaved)


def test_a_resumed_attempt_that_fails_is_retried_in_the_same_run(
    store: StateStore, clock: FakeClock
) -> None:
    """Regression: the run kept the progress record it loaded, so the retry after a
    resumed attempt failed wrote against a stale version and was refused."""

    def slow_then_flaky(item: Any, ctx: Any) -> RecordStatus:
        clock.advance(0.1)
        bad = ctx.attempt == 1 and item["v"] in (5, 45)
        return RecordStatus.ERROR if bad else RecordStatus.SUCCESS

    def runs() -> TaskEngine[RState]:
        stage = RecordsStage(Source(50), slow_then_flaky, expected_duration=1.0)
        return engine(store, stage, clock, max_attempts=3)

    assert not runs().run(time_budget=2.5).done  # attempt 1 suspended part-way
    summary = runs().run()  # resumes attempt 1, which fails; attempt 2 retries
    assert summary.status is StageStatus.COMPLETE
    state = store.load("job", "t", RState)
    assert state.attempts == 2 and state.result == SimpleRecordsResult(
        total_count=50, success_count=50
    )
