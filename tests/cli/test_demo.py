"""``eleanor-cloud demo``: a full run, determinism, and crash-and-resume as two real
processes (the console script, killed by SIGKILL mid-stage, then run again)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import eleanor_cloud as ec
from eleanor_cloud.engine import AnyStageState
from eleanor_cloud.engine.progress import Progress
from eleanor_cloud.examples.demo import BATCH, STAGES, build_demo, expected_result
from eleanor_cloud.examples.sink import BatchSink
from eleanor_cloud.models import StageStatus
from eleanor_cloud.store.documents import load_progress
from tests.cli.conftest import BIN

FAST = ["--work-delay", "0.002"]


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "eleanor-cloud"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=90,
        check=False,
    )


def test_demo_runs_to_complete_with_counts(invoke) -> None:
    result = invoke("demo", *FAST, "--seed", "11", "--records", "100", "--json")

    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["kind"] == "task" and doc["action"] == "demo" and doc["exit_code"] == 0
    assert doc["status"] == "COMPLETE"
    assert [s["name"] for s in doc["stages"]] == list(STAGES)
    assert all(s["attempts"] == 1 for s in doc["stages"])
    res = doc["result"]
    assert res["total_count"] == 100
    assert res["success_count"] + res["fail_count"] + res["unprocessed_count"] == 100
    assert res["fail_count"] > 0 and res["unprocessed_count"] > 0
    assert res == expected_result(11, 100).model_dump(mode="json")


def test_demo_is_deterministic_per_seed(invoke) -> None:
    def counts(task: str, seed: str) -> dict[str, int]:
        doc = json.loads(
            invoke(
                "demo", *FAST, "--task-id", task, "--seed", seed, "--records", "200", "--json"
            ).stdout
        )
        return {k: v for k, v in doc["result"].items() if k.endswith("_count")}

    first, again, other = counts("d1", "5"), counts("d2", "5"), counts("d3", "6")
    assert first == again
    assert first != other


def test_demo_plain_output_shows_stages_and_table(invoke) -> None:
    result = invoke("demo", *FAST)
    assert result.exit_code == 0
    out = result.stdout
    for stage in STAGES:
        assert f"[{stage}] attempt 1: started" in out
        assert f"[{stage}] COMPLETE" in out
    assert "task demo: COMPLETE" in out
    assert f"result: total=240 ok={expected_result().success_count}" in out
    # The records stages say what they processed; a fresh run resumes nothing.
    assert "[validate] this run processed 240 records" in out
    assert "[transform] this run processed 223 records" in out
    assert "resuming at record" not in out


def test_demo_again_when_complete_and_reset(invoke, store: ec.StateStore) -> None:
    assert invoke("demo", *FAST).exit_code == 0
    again = invoke("demo", *FAST)
    assert again.exit_code == 0
    assert "already COMPLETE: nothing to run" in again.stdout
    assert "[generate] attempt" not in again.stdout

    reset = invoke("demo", *FAST, "--reset")
    assert reset.exit_code == 0
    assert reset.stdout.startswith("reset: deleted task demo")
    assert "[generate] attempt 1: started" in reset.stdout
    state = store.load("demo", "generate", AnyStageState)
    assert state.attempts == 1 and len(state.history) == 1


def test_demo_time_budget_stops_with_exit_3(invoke) -> None:
    # Each demo stage expects to need 1 s: a 0.5 s budget cannot start the first one.
    result = invoke("demo", *FAST, "--time-budget", "0.5")
    assert result.exit_code == 3, result.output
    assert "stopped with work left" in result.stdout
    resumed = invoke("demo", *FAST, "--json")
    assert resumed.exit_code == 0 and json.loads(resumed.stdout)["status"] == "COMPLETE"


def _transform_output(store: ec.StateStore, task_id: str) -> list[dict[str, object]]:
    return BatchSink(store, task_id, "transform").read_all()


def test_crash_and_resume_in_two_processes(cli_env: dict[str, str], store: ec.StateStore) -> None:
    # The records of `make demo`: 240 generated, 223 valid; transform checkpoints after
    # every batch of 20 and is killed at the first batch past half of them: record 120.
    args = ["demo", "--work-delay", "0.005", "--lease-ttl", "1"]
    expected = expected_result()
    valid = expected.total_count - expected.fail_count
    at = -(-(valid // 2) // BATCH) * BATCH  # the first batch boundary at or past half
    assert (valid, at) == (223, 120)

    crashed = _cli([*args, "--crash-at", "transform"], cli_env)

    assert crashed.returncode == -signal.SIGKILL, (crashed.returncode, crashed.stderr)
    assert f"[transform] at record {at} of {valid}; checkpoint {at // BATCH} holds" in (
        crashed.stdout
    )
    assert "[transform] --crash-at transform: killing this process" in crashed.stdout
    assert "[publish]" not in crashed.stdout
    progress = load_progress(store, "demo", "transform", Progress)
    assert progress is not None and progress.value.attempt == 1
    assert (progress.value.offered, progress.value.batches) == (at, at // BATCH)
    states = {
        n: store.load("demo", n, AnyStageState) for n in ("generate", "validate", "transform")
    }
    assert states["generate"].status is StageStatus.COMPLETE
    assert states["validate"].status is StageStatus.COMPLETE
    assert states["transform"].status is StageStatus.RUNNING
    assert states["transform"].attempts == 1 and states["transform"].history == []
    lease = store.load_lease("demo")
    assert lease is not None and not lease.value.released  # the dead run never released it

    resumed = _cli(args, cli_env)

    assert resumed.returncode == 0, resumed.stderr
    out = resumed.stdout
    assert "stages already COMPLETE are skipped: generate, validate" in out
    # Whether the dead run's lease is still live when this process starts depends on
    # the machine's speed; either way the resume names it before taking it over.
    dead = lease.value.holder
    assert (
        f"the lease is held by {dead} (epoch 1)" in out
        or f"the lease of {dead} (epoch 1) expired" in out
    )
    assert "took over the expired lease (epoch 2)" in out
    assert "[generate] attempt" not in out and "[validate] attempt" not in out
    assert "[transform] attempt 2: started" in out
    # Attempt 2 starts at the last checkpoint and reads only the records left.
    assert (
        f"[transform] resuming at record {at} of {valid} from the last checkpoint "
        f"(checkpoint {at // BATCH}, by attempt 1): {valid - at} records left"
    ) in out
    assert f"[transform] this run processed {valid - at} records" in out
    assert "history: transform attempt 1: CREATED -> RETRY: interrupted" in out

    status = json.loads(_cli(["status", "demo", "--json"], cli_env).stdout)
    assert status["status"] == "COMPLETE"
    attempts = {s["name"]: s["attempts"] for s in status["stages"]}
    assert attempts == {"generate": 1, "validate": 1, "transform": 2, "publish": 1}
    assert status["lease"]["epoch"] == 2 and status["lease"]["released"] is True
    # The counts the engine computed from the checkpoints of both attempts are an
    # uninterrupted run's, and the sink got every transformed record exactly once.
    assert status["result"] == expected.model_dump(mode="json")
    transform = next(s for s in status["stages"] if s["name"] == "transform")
    assert transform["result"]["total_count"] == valid
    assert transform["result"]["unprocessed_count"] == expected.unprocessed_count
    ids = [r["id"] for r in _transform_output(store, "demo")]
    assert len(ids) == len(set(ids)) == expected.success_count

    history = json.loads(_cli(["history", "demo", "transform", "--json"], cli_env).stdout)
    assert [(e["attempt"], e["end_status"]) for e in history["entries"]] == [
        (1, "RETRY"),
        (2, "COMPLETE"),
    ]
    assert "interrupted" in history["entries"][0]["message"]


def test_a_batch_offered_again_is_written_to_the_sink_once(store: ec.StateStore) -> None:
    # Transform fails right after writing batch 6 to the sink, before the engine could
    # checkpoint it: attempt 2 resumes at record 120 and is offered batch 6 again, with
    # the same idempotency key, which the sink has already.
    notes: list[str] = []
    failed: list[str] = []

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "transform" and done == 140 and not failed:
            failed.append(stage)
            raise RuntimeError("the connection dropped after the sink write")

    engine = build_demo("dedup", store, work_delay=0, progress=progress, note=notes.append)
    summary = engine.run()

    assert summary.status is StageStatus.COMPLETE and failed == ["transform"]
    assert summary.result == expected_result()
    assert any(n.startswith("[transform] resuming at record 120 of 223") for n in notes), notes
    assert any(
        n.startswith("[transform] this run processed 103 records")
        and "1 batch(es) were already in the sink" in n
        for n in notes
    ), notes
    ids = [r["id"] for r in _transform_output(store, "dedup")]
    assert len(ids) == len(set(ids)) == expected_result().success_count


def test_demo_waits_for_a_live_lease_then_takes_over(invoke, store: ec.StateStore) -> None:
    from datetime import timedelta

    from eleanor_cloud.clock import format_ts, utc_now
    from tests.cli.conftest import seed_lease

    # Bind the task without running a stage (the budget fits none), leaving the lease
    # released; then plant a lease that a silent holder keeps for 2 more seconds.
    assert invoke("demo", *FAST, "--time-budget", "0.5").exit_code == 3
    released = store.load_lease("demo")
    assert released is not None and released.value.released
    seed_lease(
        store,
        "demo",
        expires_at=format_ts(utc_now() + timedelta(seconds=2)),
        epoch=5,
        replaces=released,
    )

    result = invoke("demo", *FAST, "--lease-ttl", "1")

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "the lease is held by otherhost/4242/deadbeef (epoch 5) until" in out
    assert "waiting up to" in out
    assert "took over the expired lease (epoch 6)" in out
    assert "task demo: COMPLETE" in out


def test_demo_crash_stage_is_validated(invoke) -> None:
    result = invoke("demo", "--crash-at", "nosuch")
    assert result.exit_code == 2


def test_bundled_demo_is_importable_from_the_package(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    # `run` with the demo factory from an unrelated directory: it ships in the package.
    env = dict(cli_env, ELEANOR_STORE=str(tmp_path / "s"))
    out = subprocess.run(
        [
            str(BIN / "eleanor-cloud"),
            "run",
            "eleanor_cloud.examples.demo:factory",
            "--task-id",
            "via-run",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=90,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["action"] == "run" and doc["status"] == "COMPLETE"
    assert doc["result"] == expected_result().model_dump(mode="json")
    assert os.path.isdir(tmp_path / "s" / "via-run")


def test_crash_at_choices_are_the_demo_stages() -> None:
    # The CLI lists them literally so --help need not import the demo module.
    import click

    from eleanor_cloud.cli.app import cli

    demo = cli.commands["demo"]
    option = next(p for p in demo.params if p.name == "crash_at")
    assert isinstance(option.type, click.Choice)
    assert tuple(option.type.choices) == STAGES
