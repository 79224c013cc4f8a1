"""Issue 17 in containers: one runner process per shard, as a Batch array job (the shard
at ``$AWS_BATCH_JOB_ARRAY_INDEX``) or an ECS task (``--shard``) runs it.

Real runner processes (``python -m eleanor_cloud.aws``) on the moto S3 server. The task
is a, r, c; ``r`` is fanned out over 3 shards of 20 records in batches of 5
(``tests.aws.taskmod.ShardedNumbers``). The test signals one runner while its batch at
position 2 waits for a file the test creates, so where it stops is decided by the
runner, not by timing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import eleanor_cloud as ec
from eleanor_cloud.aws import EXIT_OK, EXIT_STOPPED
from eleanor_cloud.aws.__main__ import EXIT_USAGE, main
from eleanor_cloud.aws.shard_runner import ARRAY_INDEX_ENV
from eleanor_cloud.engine import Page, StageContext, TaskEngine
from eleanor_cloud.engine.fanout import list_done, load_plan, load_shard
from eleanor_cloud.engine.progress import Progress
from eleanor_cloud.models import SimpleRecordsResult, StageStatus
from eleanor_cloud.store import documents
from tests.aws.runner_support import ROOT, read_until, wait_for
from tests.aws.taskmod import (
    HOLD_ENV,
    SHARD_RECORDS,
    SHARDS,
    SIDE_ENV,
    ShardedNumbers,
    TState,
    build_sharded_engine,
)

FACTORY = "tests.aws.taskmod:build_sharded_engine"


def _start(env: dict[str, str], task_id: str, *extra: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "eleanor_cloud.aws", FACTORY, "--task-id", task_id]
    cmd += ["--stage", "r", "--grace-seconds", "60", *extra]
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _offered(side: Path, shard: str) -> list[tuple[int, int, list[int]]]:
    path = side / f"r.{shard}.offered"
    rows = [line.split() for line in path.read_text().splitlines()] if path.exists() else []
    return [(int(r[0]), int(r[1]), [int(i) for i in r[2:]]) for r in rows]


def test_array_children_run_their_shards_sigterm_checkpoints_and_the_task_joins(
    env: dict[str, str],
    store: ec.StateStore,
    tmp_path: Path,
    procs: list[subprocess.Popen[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(SIDE_ENV, env[SIDE_ENV])  # stage a runs in this process too
    first = build_sharded_engine("shards", store).run()  # a, then r is planned
    assert not first.done and first.next_stage == "r"
    plan = load_plan(store, "shards", "r")
    assert plan is not None and [s.id for s in plan.shards] == ["r-0", "r-1", "r-2"]
    # Three workers at once: array children 0 and 1, and an ECS task given --shard r-2.
    # Child 1's batch at position 2 waits for the test.
    zero = _start({**env, ARRAY_INDEX_ENV: "0"}, "shards")
    held = _start({**env, ARRAY_INDEX_ENV: "1", HOLD_ENV: "2"}, "shards")
    two = _start(env, "shards", "--shard", "r-2", "--plan-id", plan.plan_id)
    procs.extend([zero, held, two])
    wait_for(tmp_path / "r.r-1.batch.2.started", held)
    held.send_signal(signal.SIGTERM)
    logged: list[str] = []
    pumping = read_until(held, "reach its next batch boundary", collected=logged)
    (tmp_path / "r.release").touch()  # the batch in flight may now finish
    held.wait(timeout=60)
    pumping.join(30)
    for proc in (zero, two):
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == EXIT_OK, err

    assert held.returncode == EXIT_STOPPED, "".join(logged)
    assert any("at a batch boundary of shard 'r-1' of stage 'r'" in line for line in logged)
    progress = documents.load_progress(store, "shards", "r", Progress, shard="r-1")
    assert progress is not None and progress.value.suspended and progress.value.batches == 3
    assert progress.value.cursor == SHARD_RECORDS + 15
    assert sorted(list_done(store, "shards", "r")) == ["r-0", "r-2"]
    lease = store.load_lease("shards", key="ecs/shards/r/shards/r-1/_lease.json")
    assert lease is not None and lease.value.released
    # The next child 1 (Batch retries exit 75) resumes the same attempt at the cursor.
    again = _start({**env, ARRAY_INDEX_ENV: "1"}, "shards")
    procs.append(again)
    _, err = again.communicate(timeout=120)
    assert again.returncode == EXIT_OK, err
    r1 = load_shard(store, "shards", "r", "r-1")
    assert r1 is not None and r1.value.status is StageStatus.COMPLETE and r1.value.attempts == 1
    offered = _offered(tmp_path, "r-1")
    assert [p for _, p, _ in offered] == [0, 1, 2, 3]
    assert {pid for pid, p, _ in offered if p < 3} == {held.pid}
    assert {pid for pid, p, _ in offered if p == 3} == {again.pid}
    # Every record once, each shard by its own worker; then the task joins and goes on.
    for i, proc in ((0, zero), (2, two)):
        assert {pid for pid, _, _ in _offered(tmp_path, f"r-{i}")} == {proc.pid}
    ids = sorted(
        i for s in range(SHARDS) for _, _, row in _offered(tmp_path, f"r-{s}") for i in row
    )
    assert ids == list(range(SHARDS * SHARD_RECORDS))
    assert build_sharded_engine("shards", store).run().status is StageStatus.COMPLETE
    joined = store.load("shards", "r", TState)
    assert joined.result == SimpleRecordsResult(
        total_count=60, success_count=60, message="joined 3 shards"
    )


@pytest.mark.parametrize(
    ("planned", "argv", "index", "match"),
    [
        (False, ["--shard", "r-0"], None, "NotPlanned: stage 'r' of task 'bad' is not planned"),
        (True, [], "3", "has 3 shards: submit the array job with size 3"),
        (True, [], "-1", "must be an index >= 0"),
        (True, ["--shard", "r-9"], None, "UnknownShard: stage 'r' of task 'bad' has no shard"),
        (True, ["--shard", "r-0", "--plan-id", "0" * 32], None, "StalePlan: "),
        (True, ["--stage", "nope", "--shard", "r-0"], None, "UnknownStage: "),
        (True, ["--stage", "a", "--shard", "r-0"], None, "is not fanned out"),
    ],
    ids=[
        "not-planned",
        "index-past-the-plan",
        "bad-index",
        "unknown-shard",
        "other-plan",
        "unknown-stage",
        "stage-not-fanned-out",
    ],
)
def test_bad_shard_input_exits_2_before_anything_runs(
    env: dict[str, str],
    store: ec.StateStore,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    planned: bool,
    argv: list[str],
    index: str | None,
    match: str,
) -> None:
    for name in ("AWS_ENDPOINT_URL_S3", "ELEANOR_STORE", "ELEANOR_TEST_SIDE"):
        monkeypatch.setenv(name, env[name])
    monkeypatch.delenv(ARRAY_INDEX_ENV, raising=False)
    if index is not None:
        monkeypatch.setenv(ARRAY_INDEX_ENV, index)
    if planned:
        build_sharded_engine("bad", store).run()
    stage = [] if "--stage" in argv else ["--stage", "r"]
    with pytest.raises(SystemExit) as exited:
        main([FACTORY, "--task-id", "bad", *stage, *argv])
    assert exited.value.code == EXIT_USAGE
    assert match in capsys.readouterr().err
    assert list_done(store, "bad", "r") == [] and load_shard(store, "bad", "r", "r-0") is None


def test_a_shard_and_an_array_index_together_are_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(ARRAY_INDEX_ENV, "0")
    with pytest.raises(SystemExit) as exited:
        main([FACTORY, "--task-id", "t", "--store", "memory://", "--stage", "r", "--shard", "x"])
    assert exited.value.code == EXIT_USAGE
    assert "exactly one of --shard and $AWS_BATCH_JOB_ARRAY_INDEX" in capsys.readouterr().err
    monkeypatch.delenv(ARRAY_INDEX_ENV)
    with pytest.raises(SystemExit) as exited:
        main([FACTORY, "--task-id", "t", "--store", "memory://", "--shard", "x"])
    assert exited.value.code == EXIT_USAGE
    assert "--shard needs --stage" in capsys.readouterr().err
    assert os.environ.get(ARRAY_INDEX_ENV) is None


class _Blocking(ShardedNumbers):
    """Its first batch waits (bounded) until the test lets it go."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.started, self.go = threading.Event(), threading.Event()

    def run(self, state: TState, ctx: StageContext[TState]) -> None:
        for batch in ctx.records(lambda c, n: Page([ctx.shard.id], cursor=None, total=1)):
            self.started.set()
            assert self.go.wait(30), "the test never let the batch go"
            for item in batch:
                batch.ok(item)


def test_interrupting_a_running_shard_records_the_attempt_and_releases_its_lease() -> None:
    store = ec.open_store("memory://")
    stage = _Blocking("r")
    engine = TaskEngine("intr", [stage], TState, store)
    engine.run()  # planned
    worker = TaskEngine("intr", [stage], TState, store)
    ended: list[object] = []

    def run() -> None:
        try:
            ended.append(worker.run_shard("r", "r-0"))
        except ec.LeaseLost as exc:  # its next write after the release is refused
            ended.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        assert stage.started.wait(30)
        recorded = worker.interrupt("the grace period ran out")  # what ContainerRunner calls
        lease = store.load_lease("intr", key="intr/r/shards/r-0/_lease.json")
        released = lease is not None and lease.value.released
    finally:
        stage.go.set()
        thread.join(30)
    assert recorded and released
    assert len(ended) == 1 and isinstance(ended[0], ec.LeaseLost), ended
    # The next worker takes the released shard at once and records the cut attempt.
    stage.go.set()
    after = TaskEngine("intr", [stage], TState, store).run_shard("r", "r-0")
    assert after.done and after.attempts == 2
