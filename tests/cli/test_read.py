"""Read commands against the local store: tasks, status, history, lease; --json shapes."""

from __future__ import annotations

import json
from datetime import timedelta

import eleanor_cloud as ec
from eleanor_cloud.clock import format_ts, utc_now
from eleanor_cloud.models import StageStatus as S
from tests.cli.conftest import seed_lease, seed_task

STAGES3 = ("extract", "transform", "load")


def test_status_table_lists_stages_results_and_lease(store: ec.StateStore, invoke) -> None:
    seed_task(
        store,
        "job-1",
        [("extract", S.COMPLETE, 1), ("transform", S.RUNNING, 2), ("load", S.CREATED, 0)],
    )
    soon = format_ts(utc_now() + timedelta(seconds=45))
    seed_lease(store, "job-1", expires_at=soon, epoch=3)

    result = invoke("status", "job-1")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("task job-1: RUNNING  (next stage: transform")
    header = lines[1].split()
    assert header[:3] == ["STAGE", "STATUS", "ATTEMPTS"]
    rows = {line.split()[0]: line for line in lines[2:5]}
    assert rows["extract"].split()[1:3] == ["COMPLETE", "1"]
    assert "total=10 ok=8 fail=1 unprocessed=1" in rows["extract"]
    assert rows["transform"].split()[1:3] == ["RUNNING", "2"]
    assert rows["load"].split()[1:3] == ["CREATED", "0"]
    lease_line = lines[-1]
    assert "holder otherhost/4242/deadbeef" in lease_line
    assert "epoch 3" in lease_line and "live" in lease_line


def test_status_json_shape(store: ec.StateStore, invoke) -> None:
    seed_task(
        store,
        "job-2",
        [("extract", S.COMPLETE, 1), ("transform", S.COMPLETE, 2), ("load", S.COMPLETE, 1)],
    )
    past = format_ts(utc_now() - timedelta(seconds=30))
    seed_lease(store, "job-2", expires_at=past, epoch=2, released=True)

    result = invoke("status", "job-2", "--json")

    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["schema"] == 1 and doc["kind"] == "task"
    assert doc["store"].startswith("file://")
    assert doc["task_id"] == "job-2"
    assert doc["status"] == "COMPLETE" and doc["done"] is True and doc["next_stage"] is None
    assert doc["state_class"] == "tests.cli.conftest.SeedState"
    assert [s["name"] for s in doc["stages"]] == list(STAGES3)
    transform = doc["stages"][1]
    assert transform["attempts"] == 2 and transform["status"] == "COMPLETE"
    assert transform["last_message"] == "ok" and transform["last_run_seconds"] == 0.5
    assert transform["revision"] == 1 and transform["updated_at"].endswith("Z")
    assert doc["result"] == {
        "total_count": 10,
        "success_count": 8,
        "fail_count": 1,
        "unprocessed_count": 1,
        "message": "load done",
    }
    assert doc["lease"]["epoch"] == 2 and doc["lease"]["released"] is True
    assert doc["lease"]["live"] is False and doc["lease"]["broken"] is False
    # No prose mixed into the JSON output.
    assert result.stdout.lstrip().startswith("{")


def test_status_of_failed_task_exits_1(store: ec.StateStore, invoke) -> None:
    seed_task(
        store,
        "bad",
        [("extract", S.COMPLETE, 1), ("transform", S.ERROR, 3), ("load", S.CREATED, 0)],
    )
    result = invoke("status", "bad")
    assert result.exit_code == 1
    assert result.stdout.startswith("task bad: ERROR  (failed stage: transform")


def test_unknown_task_is_one_line_and_exit_1(store_dir, invoke) -> None:
    result = invoke("status", "nope")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert "nope" in result.stderr and str(store_dir) in result.stderr


def test_bad_task_id_is_one_line_and_exit_2(invoke) -> None:
    for command in (["status", "../etc"], ["history", "_lease"], ["delete", "a/b", "--yes"]):
        result = invoke(*command)
        assert result.exit_code == 2, command
        assert result.stderr.count("\n") == 1, result.stderr
        assert "invalid task_id" in result.stderr


def test_tasks_lists_status_current_stage_attempts(store: ec.StateStore, invoke) -> None:
    seed_task(store, "a-done", [("x", S.COMPLETE, 1), ("y", S.COMPLETE, 1)])
    seed_task(store, "b-failed", [("x", S.COMPLETE, 1), ("y", S.ERROR, 3)])
    seed_task(store, "c-new", [("x", S.CREATED, 0), ("y", S.CREATED, 0)])
    seed_task(store, "d-retry", [("x", S.RETRY, 2), ("y", S.CREATED, 0)])

    result = invoke("tasks", "--json")

    doc = json.loads(result.stdout)
    assert doc["schema"] == 1 and doc["kind"] == "tasks" and doc["next_after"] is None
    rows = {r["task_id"]: r for r in doc["tasks"]}
    assert list(rows) == ["a-done", "b-failed", "c-new", "d-retry"]
    assert rows["a-done"]["status"] == "COMPLETE" and rows["a-done"]["current_stage"] is None
    assert rows["b-failed"]["status"] == "ERROR"
    assert rows["b-failed"]["current_stage"] == "y" and rows["b-failed"]["attempts"] == 3
    assert rows["b-failed"]["total_attempts"] == 4
    assert rows["c-new"]["status"] == "CREATED" and rows["c-new"]["current_stage"] == "x"
    assert rows["d-retry"]["status"] == "RUNNING" and rows["d-retry"]["attempts"] == 2
    assert rows["c-new"]["updated_at"] == "2026-11-30T00:00:00.000000Z"

    plain = invoke("tasks")
    assert plain.exit_code == 0
    lines = plain.stdout.splitlines()
    assert lines[0].split() == ["TASK", "STATUS", "CURRENT", "STAGE", "ATTEMPTS", "UPDATED"]
    assert lines[2].split()[:4] == ["b-failed", "ERROR", "y", "3"]


def test_tasks_pagination_and_status_filter(store: ec.StateStore, invoke) -> None:
    for i in range(7):
        status = S.ERROR if i % 3 == 0 else S.COMPLETE
        seed_task(store, f"t{i}", [("only", status, 1)])

    first = json.loads(invoke("tasks", "--limit", "3", "--json").stdout)
    assert [t["task_id"] for t in first["tasks"]] == ["t0", "t1", "t2"]
    assert first["next_after"] == "t2"
    second = json.loads(invoke("tasks", "--limit", "3", "--after", "t2", "--json").stdout)
    assert [t["task_id"] for t in second["tasks"]] == ["t3", "t4", "t5"]
    last = json.loads(invoke("tasks", "--limit", "3", "--after", "t5", "--json").stdout)
    assert [t["task_id"] for t in last["tasks"]] == ["t6"] and last["next_after"] is None

    failed = json.loads(invoke("tasks", "--status", "error", "--json").stdout)
    assert [t["task_id"] for t in failed["tasks"]] == ["t0", "t3", "t6"]
    assert failed["filter"]["status"] == "ERROR"

    plain = invoke("tasks", "--limit", "2")
    assert plain.stdout.splitlines()[-1] == "more tasks: eleanor-cloud tasks --after t1 --limit 2"


def test_tasks_on_empty_store(store_dir, invoke) -> None:
    result = invoke("tasks")
    assert result.exit_code == 0
    assert result.stdout.startswith("no tasks in file://")


def test_history_all_stages_and_one_stage(store: ec.StateStore, invoke) -> None:
    seed_task(
        store,
        "h",
        [("extract", S.COMPLETE, 1), ("transform", S.COMPLETE, 3), ("load", S.CREATED, 0)],
    )

    doc = json.loads(invoke("history", "h", "--json").stdout)
    assert doc["schema"] == 1 and doc["kind"] == "history" and doc["stage"] is None
    assert [(e["stage"], e["attempt"], e["end_status"]) for e in doc["entries"]] == [
        ("extract", 1, "COMPLETE"),
        ("transform", 1, "RETRY"),
        ("transform", 2, "RETRY"),
        ("transform", 3, "COMPLETE"),
    ]
    assert doc["entries"][1]["message"] == "boom 1"
    assert set(doc["entries"][0]) == {
        "stage",
        "attempt",
        "begin_status",
        "end_status",
        "begin_ts",
        "end_ts",
        "run_time_seconds",
        "message",
    }

    one = invoke("history", "h", "transform")
    lines = one.stdout.splitlines()
    assert lines[0].split()[:4] == ["STAGE", "ATTEMPT", "FROM", "TO"]
    assert len(lines) == 4 and all(line.startswith("transform") for line in lines[1:])
    assert lines[1].split()[2:4] == ["CREATED", "RETRY"]

    missing = invoke("history", "h", "nosuch")
    assert missing.exit_code == 1 and "no stage 'nosuch'" in missing.stderr


def test_extra_fields_of_user_state_are_readable(store: ec.StateStore, invoke) -> None:
    # The CLI has no SeedState; AnyStageState must still read it, extra field and all.
    seed_task(store, "x", [("only", S.COMPLETE, 1)])
    doc = json.loads(invoke("status", "x", "--json").stdout)
    assert doc["stages"][0]["result"]["message"] == "only done"


def test_lease_show_and_break(store: ec.StateStore, invoke) -> None:
    seed_task(store, "l", [("only", S.RUNNING, 1)])
    soon = format_ts(utc_now() + timedelta(seconds=50))
    seed_lease(store, "l", expires_at=soon, epoch=4)

    shown = json.loads(invoke("lease", "l", "--json").stdout)
    assert shown["kind"] == "lease" and shown["lease"]["live"] is True
    assert shown["lease"]["epoch"] == 4 and shown["broken"] is False

    declined = invoke("lease", "l", "--break", input="n\n")
    assert declined.exit_code == 1  # click's Abort
    assert store.load_lease("l").value.expires_at == soon  # type: ignore[union-attr]

    broken = invoke("lease", "l", "--break", "--yes", "--json")
    assert broken.exit_code == 0
    doc = json.loads(broken.stdout)
    assert doc["broken"] is True and doc["lease"]["live"] is False
    assert doc["lease"]["broken"] is True
    record = store.load_lease("l")
    assert record is not None
    # Holder and epoch kept, so the next taker sees an expired lease and fences.
    assert record.value.epoch == 4 and record.value.holder == "otherhost/4242/deadbeef"
    assert record.value.released is False and record.epoch == 4

    again = invoke("lease", "l", "--break", "--yes")
    assert "already broken" in again.stdout


def test_lease_of_task_without_lease(store: ec.StateStore, invoke) -> None:
    seed_task(store, "n", [("only", S.CREATED, 0)])
    assert invoke("lease", "n").stdout.startswith("lease: none")
    result = invoke("lease", "n", "--break", "--yes")
    assert result.exit_code == 1 and "no lease to break" in result.stderr


def test_corrupt_task_is_listed_not_fatal(store: ec.StateStore, store_dir, invoke) -> None:
    seed_task(store, "good", [("only", S.COMPLETE, 1)])
    seed_task(store, "rotten", [("only", S.COMPLETE, 1)])
    (store_dir / "rotten" / "only.json").write_bytes(b"{not json")

    doc = json.loads(invoke("tasks", "--json").stdout)
    rows = {t["task_id"]: t for t in doc["tasks"]}
    assert rows["good"]["status"] == "COMPLETE"
    assert rows["rotten"]["status"] == "CORRUPT" and "not JSON" in rows["rotten"]["error"]

    status = invoke("status", "rotten")
    assert status.exit_code == 1
    assert status.stderr.count("\n") == 1 and "corrupt object" in status.stderr
    assert "rotten/only.json" in status.stderr


def test_paging_through_every_task_with_a_filter(store: ec.StateStore, invoke) -> None:
    # More tasks than one loading chunk (32), so pages cross chunk boundaries.
    expected = []
    for i in range(45):
        failed = i % 4 == 1
        seed_task(store, f"task-{i:03d}", [("only", S.ERROR if failed else S.COMPLETE, 1)])
        if failed:
            expected.append(f"task-{i:03d}")

    def collect(*extra: str) -> list[str]:
        seen: list[str] = []
        after: list[str] = []
        for _ in range(50):
            doc = json.loads(invoke("tasks", "--limit", "4", *extra, *after, "--json").stdout)
            seen += [t["task_id"] for t in doc["tasks"]]
            if doc["next_after"] is None:
                return seen
            after = ["--after", doc["next_after"]]
        raise AssertionError("pagination did not terminate")

    assert collect("--status", "ERROR") == expected
    assert collect() == [f"task-{i:03d}" for i in range(45)]
