"""``run`` with a user's factory module, and cancel / retry / rollback on its task."""

from __future__ import annotations

import json
import textwrap
import uuid
from pathlib import Path

import pytest

import eleanor_cloud as ec
from eleanor_cloud.engine import AnyStageState
from eleanor_cloud.models import StageStatus

FACTORY = '''
"""A user's task: three stages; "flaky" fails while the file FAIL exists."""
from pathlib import Path

import eleanor_cloud as ec
from eleanor_cloud.engine import BaseStage, TaskEngine

HERE = Path(__file__).parent
events = []


class State(ec.BaseStageState[ec.SimpleRecordsResult]):
    rows: int = 0


class Stage(BaseStage[State]):
    def run(self, state, ctx):
        if self.name == "flaky" and (HERE / "FAIL").exists():
            raise RuntimeError("upstream not ready")
        state.rows = 10
        return ec.SimpleRecordsResult(total_count=10, success_count=10,
                                      message=f"{self.name} ok")

    def rollback(self, state, ctx):
        with open(HERE / "rolled_back.txt", "a") as fh:
            fh.write(self.name + "\\n")


class Slow(Stage):
    expected_duration = 3600.0


def build(task_id, store):
    return TaskEngine(task_id, [Stage("extract"), Stage("flaky"), Stage("load")], State,
                      store, max_attempts=1, on_event=events.append)


def build_slow(task_id, store):
    return TaskEngine(task_id, [Stage("extract"), Slow("flaky"), Stage("load")], State,
                      store, max_attempts=1)


def not_an_engine(task_id, store):
    return 42


NOT_CALLABLE = 3
'''


@pytest.fixture
def factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """A user module in the cwd (as ``eleanor-cloud run`` finds it); unique per test."""
    name = f"user_tasks_{uuid.uuid4().hex[:8]}"
    work = tmp_path / "work"
    work.mkdir()
    (work / f"{name}.py").write_text(textwrap.dedent(FACTORY))
    monkeypatch.chdir(work)
    return name, work


def _stage(store: ec.StateStore, task: str, name: str) -> AnyStageState:
    return store.load(task, name, AnyStageState)


def test_run_completes_and_exits_0(factory, invoke, store: ec.StateStore) -> None:
    module, _ = factory
    result = invoke("run", f"{module}:build", "--task-id", "t1")
    assert result.exit_code == 0, result.output
    assert "[extract] attempt 1: started" in result.stdout
    assert "task t1: COMPLETE" in result.stdout
    assert _stage(store, "t1", "load").status is StageStatus.COMPLETE

    # The factory's own on_event still got every event (the CLI chains after it).
    import importlib

    user = importlib.import_module(module)
    kinds = [e.kind for e in user.events]
    assert kinds.count("stage_completed") == 3 and kinds[-1] == "task_completed"

    # Running a COMPLETE task again is a no-op that still exits 0.
    again = invoke("run", f"{module}:build", "--task-id", "t1", "--json")
    assert again.exit_code == 0
    doc = json.loads(again.stdout)
    assert doc["exit_code"] == 0 and doc["status"] == "COMPLETE"
    assert [s["attempts"] for s in doc["stages"]] == [1, 1, 1]


def test_run_failure_exits_1_then_retry_redrives(factory, invoke, store: ec.StateStore) -> None:
    module, work = factory
    (work / "FAIL").touch()

    failed = invoke("run", f"{module}:build", "--task-id", "t2")
    assert failed.exit_code == 1
    assert "[flaky] ERROR" in failed.stdout and "upstream not ready" in failed.stdout
    assert _stage(store, "t2", "flaky").status is StageStatus.ERROR

    (work / "FAIL").unlink()
    redrive = invoke("retry", "t2", "--json")
    assert redrive.exit_code == 0, redrive.output
    doc = json.loads(redrive.stdout)
    assert doc["action"] == "retry" and doc["changed"] == ["flaky"]
    assert doc["stages"][1]["status"] == "RETRY" and doc["status"] == "RUNNING"

    resumed = invoke("run", f"{module}:build", "--task-id", "t2")
    assert resumed.exit_code == 0, resumed.output
    assert "[extract] attempt" not in resumed.stdout  # COMPLETE: skipped
    flaky = _stage(store, "t2", "flaky")
    assert flaky.status is StageStatus.COMPLETE and flaky.attempts == 2

    nothing = invoke("retry", "t2")
    assert nothing.exit_code == 0
    assert nothing.stdout.startswith("task t2: nothing to retry (no stage is in ERROR)")


def test_run_time_budget_exits_3(factory, invoke, store: ec.StateStore) -> None:
    module, _ = factory
    result = invoke("run", f"{module}:build_slow", "--task-id", "t3", "--time-budget", "5")
    assert result.exit_code == 3, result.output
    assert "stopped with work left" in result.stdout
    assert "resume at stage flaky" in result.stdout
    assert _stage(store, "t3", "extract").status is StageStatus.COMPLETE
    doc = json.loads(invoke("status", "t3", "--json").stdout)
    assert doc["status"] == "RUNNING" and doc["next_stage"] == "flaky"


def test_cancel(factory, invoke, store: ec.StateStore) -> None:
    module, _ = factory
    invoke("run", f"{module}:build_slow", "--task-id", "t4", "--time-budget", "5")

    result = invoke("cancel", "t4")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("canceled task t4: flaky, load now CANCELED")
    assert _stage(store, "t4", "flaky").status is StageStatus.CANCELED
    assert _stage(store, "t4", "extract").status is StageStatus.COMPLETE

    status = invoke("status", "t4")
    assert status.exit_code == 1 and "task t4: CANCELED" in status.stdout
    run = invoke("run", f"{module}:build", "--task-id", "t4")
    assert run.exit_code == 1

    again = invoke("cancel", "t4", "--json")
    assert again.exit_code == 0 and json.loads(again.stdout)["changed"] == []


def test_rollback_states_only_and_with_factory(factory, invoke, store: ec.StateStore) -> None:
    module, work = factory
    assert invoke("run", f"{module}:build", "--task-id", "t5").exit_code == 0

    states_only = invoke("rollback", "t5", "--to", "load", "--json")
    assert states_only.exit_code == 0, states_only.output
    doc = json.loads(states_only.stdout)
    assert doc["action"] == "rollback" and doc["changed"] == ["load"]
    assert [s["status"] for s in doc["stages"]] == ["COMPLETE", "COMPLETE", "CREATED"]
    assert not (work / "rolled_back.txt").exists()

    assert invoke("run", f"{module}:build", "--task-id", "t5").exit_code == 0
    with_code = invoke("rollback", "t5", "--to", "flaky", "--factory", f"{module}:build")
    assert with_code.exit_code == 0, with_code.output
    assert "rollback() called on the completed stages" in with_code.stdout
    assert with_code.stdout.splitlines()[0].endswith("reset to CREATED: flaky, load")
    # Reverse order, last stage first, down to (and including) the target.
    assert (work / "rolled_back.txt").read_text().split() == ["load", "flaky"]
    assert _stage(store, "t5", "flaky").status is StageStatus.CREATED
    assert _stage(store, "t5", "extract").status is StageStatus.COMPLETE

    unknown = invoke("rollback", "t5", "--to", "nosuch")
    assert unknown.exit_code == 2 and "no stage 'nosuch'" in unknown.stderr


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("nomodule_xyz:build", "no module named 'nomodule_xyz'"),
        ("{module}:missing", "has no attribute 'missing'"),
        ("{module}:NOT_CALLABLE", "is not callable"),
        ("{module}", "is not MODULE:FACTORY"),
        ("{module}:not_an_engine", "not a TaskEngine"),
    ],
)
def test_bad_factory_is_a_one_line_usage_error(factory, invoke, spec: str, expected: str) -> None:
    module, _ = factory
    result = invoke("run", spec.format(module=module), "--task-id", "x")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert expected in result.stderr


def test_unknown_task_for_manage_commands(invoke) -> None:
    for command in (
        ["cancel", "ghost"],
        ["retry", "ghost"],
        ["rollback", "ghost", "--to", "a"],
        ["lease", "ghost"],
    ):
        result = invoke(*command)
        assert result.exit_code == 1, command
        assert "'ghost'" in result.stderr and result.stderr.count("\n") == 1


def test_live_lease_blocks_run_until_broken(factory, invoke, store: ec.StateStore) -> None:
    from datetime import timedelta

    from eleanor_cloud.clock import format_ts, utc_now
    from tests.cli.conftest import seed_lease

    module, _ = factory
    invoke("run", f"{module}:build_slow", "--task-id", "t6", "--time-budget", "5")
    record = store.load_lease("t6")
    assert record is not None and record.value.released
    # A holder that looks alive for another hour (a paused host, say).
    seed_lease(
        store,
        "t6",
        expires_at=format_ts(utc_now() + timedelta(hours=1)),
        epoch=5,
        replaces=record,
    )

    blocked = invoke("run", f"{module}:build", "--task-id", "t6")
    assert blocked.exit_code == 1
    assert blocked.stderr.count("\n") == 1 and "otherhost/4242/deadbeef" in blocked.stderr
    before = json.loads(invoke("status", "t6", "--json").stdout)
    assert [s["status"] for s in before["stages"]] == ["COMPLETE", "CREATED", "CREATED"]

    assert invoke("lease", "t6", "--break", "--yes").exit_code == 0
    resumed = invoke("run", f"{module}:build", "--task-id", "t6", "--json")
    assert resumed.exit_code == 0, resumed.output
    doc = json.loads(resumed.stdout)
    assert doc["status"] == "COMPLETE"
    # The taker fenced the old holder out with a higher epoch.
    assert doc["lease"]["epoch"] == 6 and doc["lease"]["holder"] != "otherhost/4242/deadbeef"
