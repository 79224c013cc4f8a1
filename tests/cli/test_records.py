"""A records stage (``ctx.records``) in the CLI: ``status`` and ``--json`` show its
progress, ``history`` its checkpoints per attempt, and ``failed`` lists or exports its
failed record ids, chunk by chunk, never a line a progress object did not commit.

The task is built with the engine on the local store: attempt 1 of stage ``t`` fails
some records (a RETRY), attempt 2 re-offers them and is suspended by a stop request
after one batch of its retry pass, so the progress has failed chunks of the latest
outcomes *and* a retry pass with pending chunks, the first partly re-offered.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import eleanor_cloud as ec
from eleanor_cloud.backends.base import Replace
from eleanor_cloud.engine import Backoff, BaseStage, StageContext, TaskEngine
from eleanor_cloud.engine import progress as pg
from eleanor_cloud.engine.progress import Progress
from eleanor_cloud.models import StageStatus
from eleanor_cloud.store import StateStore, documents
from tests.cli.conftest import HOSTILE, SHOWN

ROWS = [{"id": f"r{i:03d}", "v": i} for i in range(60)]
BY_ID = {row["id"]: row for row in ROWS}


class RState(ec.BaseStageState[ec.SimpleRecordsResult]):
    pass


def read(cursor: Any, limit: int) -> ec.Page:
    start = cursor or 0
    items = ROWS[start : start + limit]
    end = start + len(items)
    return ec.Page(items, cursor=end if end < len(ROWS) else None, total=len(ROWS))


def lookup(ids: list[str]) -> list[dict[str, Any]]:
    return [BY_ID[i] for i in ids]


class Plain(BaseStage[RState]):
    def run(self, state: RState, ctx: StageContext[RState]) -> None:
        return None


class Records(BaseStage[RState]):
    """Attempt 1: v % 5 == 0 fails (``reason``), v % 10 == 9 is skipped. Attempt 2:
    r000 and r005 fail again, and ``stop`` (if set) is asked at its first record."""

    def __init__(self, *, stop: Any = None, reason: str = "bad") -> None:
        super().__init__("t")
        self.stop, self.reason = stop, reason

    def run(self, state: RState, ctx: StageContext[RState]) -> None:
        for batch in ctx.records(read, lookup=lookup, batch_size=10, checkpoint_every=0):
            for item in batch:
                v = item["v"]
                if ctx.attempt == 2 and self.stop is not None:
                    self.stop()
                if ctx.attempt == 1 and v % 5 == 0:
                    batch.fail(item, self.reason)
                elif ctx.attempt == 1 and v % 10 == 9:
                    batch.skip(item, "later")
                elif ctx.attempt == 2 and item["id"] in {"r000", "r005"}:
                    batch.fail(item, "again")
                else:
                    batch.ok(item)


def engine(store: StateStore, stage: Records, max_attempts: int = 3) -> TaskEngine[RState]:
    return TaskEngine(
        "rec",
        [Plain("prep"), stage, Plain("after")],
        RState,
        store,
        backoff=Backoff(initial=0, jitter=0),
        max_attempts=max_attempts,
    )


def suspend_in_attempt_2(store: StateStore, reason: str = "bad") -> None:
    holder: list[TaskEngine[RState]] = []
    stage = Records(stop=lambda: holder[0].request_stop("test stop"), reason=reason)
    holder.append(engine(store, stage))
    summary = holder[0].run()
    assert not summary.done and summary.status is StageStatus.RUNNING


def progress_of(store: StateStore) -> Progress:
    record = documents.load_progress(store, "rec", "t", Progress)
    assert record is not None
    return record.value


@pytest.fixture
def suspended(store: StateStore) -> StateStore:
    suspend_in_attempt_2(store)
    return store


def add_uncommitted_line(store: StateStore, chunk: str) -> None:
    """Append a line past the count the progress records (a write that was never
    committed by a checkpoint): readers must not list it."""
    from eleanor_cloud import keys

    key = keys.failed_chunk_key(store.prefix, "rec", "t", chunk)
    data, version = store.backend.read(key)
    extra = json.dumps({"id": f"ghost-{chunk}", "status": "error", "reason": "uncommitted"})
    store.backend.write(key, data + extra.encode() + b"\n", Replace(version))


def test_the_scenario_is_what_the_tests_assume(suspended: StateStore) -> None:
    p = progress_of(suspended)
    assert p.suspended and p.attempt == 2 and p.retry is not None
    assert (p.retry.chunk, p.retry.offset) == (0, 10) and len(p.retry.chunks) == 1
    assert p.retry.chunks[0].count == 18 and [c.count for c in p.chunks] == [2]
    assert pg.result_of(p).model_dump(exclude={"message"}) == {
        "total_count": 60,
        "success_count": 50,
        "fail_count": 7,
        "unprocessed_count": 3,
    }


def test_status_shows_a_records_stage_progress(suspended: StateStore, invoke) -> None:
    result = invoke("status", "rec")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    progress = [line for line in lines if line.startswith("progress of ")]
    assert len(progress) == 1, "only the records stage has progress"
    line = progress[0]
    assert line.startswith("progress of t: 57/60 records (ok 50, fail 7, unprocessed 3); ")
    assert "last checkpoint 20" in line
    assert "suspended in attempt 2: the next run resumes it from here" in line
    assert "8 failed records of earlier attempts to retry" in line
    assert "10 failed ids: eleanor-cloud failed rec t" in line


def test_status_json_carries_the_progress(suspended: StateStore, invoke) -> None:
    doc = json.loads(invoke("status", "rec", "--json").stdout)  # schema-checked (conftest)
    stages = {s["name"]: s for s in doc["stages"]}
    assert stages["prep"]["progress"] is None and stages["after"]["progress"] is None
    assert "progress_error" not in stages["t"]
    p = stages["t"]["progress"]
    checkpointed = documents.load_progress(suspended, "rec", "t", Progress)
    assert checkpointed is not None
    assert p == {
        "done": 57,
        "total": 60,
        "ok": 50,
        "fail": 7,
        "unprocessed": 3,
        "offered": 60,
        "exhausted": True,
        "finished": False,
        "suspended": True,
        "attempt": 2,
        "batches": 7,
        "checkpointed_at": checkpointed.written_at,
        "failed_ids": 10,
        "failed_ids_dropped": 0,
        "retry_pending": 8,
        "cursor": None,
    }


def test_history_shows_checkpoints_per_attempt(suspended: StateStore, invoke) -> None:
    p = progress_of(suspended)
    doc = json.loads(invoke("history", "rec", "--json").stdout)
    assert [(e["stage"], e["attempt"], e["end_status"]) for e in doc["entries"]] == [
        ("prep", 1, "COMPLETE"),
        ("t", 1, "RETRY"),  # attempt 2 is suspended: no entry yet
    ]
    rows = doc["checkpoints"]
    assert [(r["stage"], r["attempt"], r["suspended"]) for r in rows] == [
        ("t", 1, False),
        ("t", 2, True),
    ]
    for row, log in zip(rows, p.attempts, strict=True):
        assert {k: row[k] for k in log.model_dump()} == log.model_dump()
    assert rows[0]["records"] == 60 and rows[0]["batches"] == 6 and rows[0]["slices"] == 1
    assert rows[1]["records"] == 10 and rows[1]["batches"] == 1

    plain = invoke("history", "rec", "t").stdout.splitlines()
    assert plain[0].split()[:4] == ["STAGE", "ATTEMPT", "FROM", "TO"]
    assert plain[1].split()[:4] == ["t", "1", "CREATED", "RETRY"]
    assert plain[2] == "checkpoints (records stages):"
    first, second = plain[3:]
    a1 = p.attempts[0]
    assert first.startswith(
        f"  t attempt 1: 1 slice, {a1.checkpoints} checkpoints, 6 batches, 60 records, last 20"
    )
    assert second.startswith("  t attempt 2: 1 slice, ") and ", 1 batch, 10 records, " in second
    assert second.endswith("(suspended: the next run resumes it)")
    # A stage without progress shows no checkpoints.
    assert "checkpoints" not in invoke("history", "rec", "prep").stdout
    assert json.loads(invoke("history", "rec", "prep", "--json").stdout)["checkpoints"] == []


def _jsonl(invoke, *args: str) -> list[dict[str, Any]]:
    result = invoke("failed", "rec", "t", "--jsonl", *args)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_failed_exports_the_latest_outcomes_then_the_pending_retries(
    suspended: StateStore, invoke
) -> None:
    p = progress_of(suspended)
    assert p.retry is not None
    rows = _jsonl(invoke)
    assert all(set(row) == {"id", "status", "reason", "chunk"} for row in rows)
    latest, pending = rows[:2], rows[2:]
    assert [(r["id"], r["status"], r["reason"]) for r in latest] == [
        ("r000", "error", "again"),
        ("r005", "error", "again"),
    ]
    assert {r["chunk"] for r in latest} == {p.chunks[0].name}
    # The retry pass re-offered 10 of its 18 lines; the other 8 wait.
    assert [r["id"] for r in pending] == [
        "r035",
        "r039",
        "r040",
        "r045",
        "r049",
        "r050",
        "r055",
        "r059",
    ]
    assert {r["chunk"] for r in pending} == {p.retry.chunks[0].name}
    assert {r["status"] for r in pending} == {"error", "unprocessed"}
    assert len(rows) == p.errors + p.unprocessed_reported  # every failure, once

    assert [r["id"] for r in _jsonl(invoke, "--limit", "3")] == ["r000", "r005", "r035"]


def test_failed_plain_listing_and_limit(suspended: StateStore, invoke) -> None:
    lines = invoke("failed", "rec", "t").stdout.splitlines()
    assert lines[0] == "failed records of task rec stage t: 10"
    assert lines[1] == "error        r000  again"
    assert len(lines) == 11
    assert "unprocessed  r039  later" in lines

    limited = invoke("failed", "rec", "t", "--limit", "3")
    assert limited.exit_code == 0
    out = limited.stdout.splitlines()
    assert len(out) == 5 and out[-1] == "showed 3 of 10 failed ids (--limit)"
    jsonl = invoke("failed", "rec", "t", "--jsonl", "--limit", "3")
    assert "showed 3 of 10" in jsonl.stderr and len(jsonl.stdout.splitlines()) == 3


def test_uncommitted_trailing_lines_are_not_listed(suspended: StateStore, invoke) -> None:
    p = progress_of(suspended)
    assert p.retry is not None
    before = _jsonl(invoke)
    for chunk in (p.chunks[0].name, p.retry.chunks[0].name):
        add_uncommitted_line(suspended, chunk)
    after = _jsonl(invoke)
    assert after == before
    assert not any(r["id"].startswith("ghost") for r in after)
    assert "ghost" not in invoke("failed", "rec", "t").stdout


def test_failed_reads_one_chunk_at_a_time_and_stops_at_the_limit(
    store: StateStore, invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pg, "CHUNK_RECORDS", 4)  # 18 failures in attempt 1: 5 chunks
    suspend_in_attempt_2(store)
    p = progress_of(store)
    assert p.retry is not None and len(p.retry.chunks) == 5
    reads: list[str] = []
    real = documents.read_chunk

    def counted(*args: Any, **kw: Any) -> list[dict[str, Any]]:
        reads.append(args[3])
        return real(*args, **kw)

    monkeypatch.setattr(documents, "read_chunk", counted)
    every = _jsonl(invoke)
    # The retry batch took the 4 lines of the first chunk (2 failed again): 2 + 14 left.
    assert len(every) == p.errors + p.unprocessed_reported == 16
    assert len(reads) == len({r["chunk"] for r in every})  # each chunk read once
    reads.clear()
    assert len(_jsonl(invoke, "--limit", "2")) == 2
    assert reads == [p.chunks[0].name], "only the chunks needed for the limit are read"


def test_failed_refuses_unknown_task_stage_and_stage_without_progress(
    suspended: StateStore, invoke
) -> None:
    for args, words in (
        (("nosuch", "t"), "no task 'nosuch'"),
        (("rec", "nosuch"), "no stage 'nosuch'"),
        (("rec", "prep"), "stage 'prep' of task 'rec' has no record progress"),
    ):
        result = invoke("failed", *args)
        assert result.exit_code == 1, args
        assert result.stdout == ""
        assert len(result.stderr.splitlines()) == 1 and words in result.stderr, result.stderr


def test_resumed_to_complete_progress_is_still_shown(suspended: StateStore, invoke) -> None:
    # Resume attempt 2 (it ends with r000 and r005 failed: ERROR at max_attempts=2),
    # then 'retry' and a new run for attempt 3. (In one run, attempt 3 after a resumed
    # attempt 2 is refused by the engine today: see the report of this change.)
    assert engine(suspended, Records(), max_attempts=2).run().status is StageStatus.ERROR
    assert invoke("retry", "rec").exit_code == 0
    summary = engine(suspended, Records()).run()
    assert summary.status is StageStatus.COMPLETE
    doc = json.loads(invoke("status", "rec", "--json").stdout)
    p = next(s for s in doc["stages"] if s["name"] == "t")["progress"]
    assert (p["done"], p["total"], p["ok"], p["fail"], p["unprocessed"]) == (60, 60, 60, 0, 0)
    assert p["finished"] and not p["suspended"] and p["failed_ids"] == 0
    line = next(x for x in invoke("status", "rec").stdout.splitlines() if "progress" in x)
    assert line.startswith("progress of t: 60/60 records (ok 60, fail 0, unprocessed 0); ")
    assert "suspended" not in line and "failed ids" not in line
    attempts = [
        r["attempt"] for r in json.loads(invoke("history", "rec", "--json").stdout)["checkpoints"]
    ]
    assert attempts == [1, 2, 3]
    empty = invoke("failed", "rec", "t")
    assert empty.exit_code == 0 and empty.stdout.splitlines() == [
        "failed records of task rec stage t: 0"
    ]
    assert invoke("failed", "rec", "t", "--jsonl").stdout == ""


def test_stored_ids_and_reasons_are_escaped(store: StateStore, invoke) -> None:
    suspend_in_attempt_2(store, reason=HOSTILE + "\nforged line")
    plain = invoke("failed", "rec", "t").stdout
    assert "\x1b" not in plain and "\x9b" not in plain and "\x07" not in plain
    assert SHOWN in plain and "\\nforged line" in plain
    assert all(not line.startswith("forged") for line in plain.splitlines())
    exported = invoke("failed", "rec", "t", "--jsonl").stdout
    assert "\x9b" not in exported and "\x1b" not in exported
    reasons = {json.loads(line)["reason"] for line in exported.splitlines()}
    assert HOSTILE + "\nforged line" in reasons  # the JSON decodes to the stored text


def test_a_corrupt_progress_object_does_not_hide_the_task(
    suspended: StateStore, store_dir: Path, invoke
) -> None:
    (store_dir / "rec" / "t" / "progress.json").write_bytes(b"{not json")
    result = invoke("status", "rec")
    assert result.exit_code == 0
    assert any(
        line.startswith("progress of t: cannot be read: ") for line in result.stdout.splitlines()
    )
    doc = json.loads(invoke("status", "rec", "--json").stdout)
    t = next(s for s in doc["stages"] if s["name"] == "t")
    assert t["progress"] is None and "progress.json" in t["progress_error"]
    failed = invoke("failed", "rec", "t")
    assert failed.exit_code == 1 and "progress.json" in failed.stderr


def test_on_a_terminal_the_progress_and_ids_are_escaped(
    store: StateStore, cli_env: dict[str, str]
) -> None:
    from tests.cli.test_terminal import ANSI, _spawn

    suspend_in_attempt_2(store, reason=HOSTILE)
    for args, expected in (
        (["status", "rec"], "progress of t: 57/60 records (ok 50, fail 7, unprocessed 3)"),
        (["history", "rec"], "t attempt 2: 1 slice, "),
        (["failed", "rec", "t"], "unprocessed  r039  later"),
    ):
        output, status, _ = _spawn(args, cli_env)
        assert status == 0, output[-500:]
        for raw in ("\x9b", "\x07", "\x1b]0;"):
            assert raw not in output, args
        assert expected in ANSI.sub("", output), args
    failed, _, _ = _spawn(["failed", "rec", "t", "--limit", "3"], cli_env)
    assert f"error        r035  {SHOWN}" in ANSI.sub("", failed)  # rich markup not parsed


def test_failed_piped_into_head_stops_quietly(store_dir: Path, cli_env: dict[str, str]) -> None:
    import subprocess

    from tests.cli.conftest import BIN

    rows = [{"id": f"id-{i:05d}"} for i in range(3000)]  # ~250 KB of JSON lines

    def many(cursor: Any, limit: int) -> ec.Page:
        start = cursor or 0
        end = min(start + limit, len(rows))
        return ec.Page(rows[start:end], cursor=end if end < len(rows) else None)

    class AllFail(BaseStage[RState]):
        def run(self, state: RState, ctx: StageContext[RState]) -> None:
            for batch in ctx.records(many, batch_size=500, tolerate_failures=True):
                for item in batch:
                    batch.fail(item, "no")

    store = ec.open_store(str(store_dir))
    TaskEngine("big", [AllFail("t")], RState, store).run()
    reader = subprocess.Popen(
        [str(BIN / "eleanor-cloud"), "failed", "big", "t", "--jsonl"],
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert reader.stdout is not None and reader.stderr is not None
    first = json.loads(reader.stdout.readline())
    reader.stdout.close()  # like `| head -1`
    assert reader.wait(timeout=60) == 0
    assert reader.stderr.read() == b""
    reader.stderr.close()
    assert first == {"id": "id-00000", "status": "error", "reason": "no", "chunk": first["chunk"]}
