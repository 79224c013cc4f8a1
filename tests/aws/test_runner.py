"""The container runner as ECS runs it: a subprocess that gets SIGTERM mid-stage.

The store is the moto S3 server on 127.0.0.1. The test waits (bounded) for the marker
file a stage creates when it starts, then signals the process, as ECS would on a stop or
a Fargate Spot interruption.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

import eleanor_cloud as ec
from eleanor_cloud.aws import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_STOPPED,
    EXIT_WORK_LEFT,
    ContainerRunner,
    grace_from_env,
)
from eleanor_cloud.models import StageStatus
from tests.aws.runner_support import read_until, start, wait_for
from tests.aws.taskmod import SIDE_ENV, SLOW_ENV, SLOW_SECONDS_ENV, TState, build_runner_engine


def _runs(side: Path, stage: str) -> list[str]:
    path = side / f"{stage}.runs"
    return path.read_text().splitlines() if path.exists() else []


def test_sigterm_past_the_grace_period_records_the_attempt_and_the_next_container_resumes(
    env: dict[str, str],
    store: ec.StateStore,
    tmp_path: Path,
    procs: list[subprocess.Popen[str]],
    entry: str,
) -> None:
    slow = {**env, SLOW_ENV: "b", SLOW_SECONDS_ENV: "60"}
    first = start(slow, "spot", "0.5", entry=entry)
    procs.append(first)
    wait_for(tmp_path / "b.started.1", first)
    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=60)

    assert first.returncode == EXIT_INTERRUPTED, err
    assert "SIGTERM received" in err and "recorded as interrupted" in err
    # The interrupted attempt is in the history, written by the stopping container.
    b = store.load("spot", "b", TState)
    assert b.status is StageStatus.RETRY and b.attempts == 1
    (entry,) = b.history
    assert entry.end_status is StageStatus.RETRY
    assert entry.message.startswith("interrupted: SIGTERM received")
    assert "0.5s grace period" in entry.message
    assert store.load("spot", "a", TState).status is StageStatus.COMPLETE
    assert "c" not in store.load_task("spot", TState)
    lease = store.load_lease("spot")
    assert lease is not None and lease.value.released
    first_epoch = lease.value.epoch

    # The next container: no lease to wait for (TTL is 120 s), a done, b retried.
    second = start(env, "spot", "0.5", entry=entry)
    procs.append(second)
    _, err = second.communicate(timeout=60)
    assert second.returncode == EXIT_OK, err
    summary = build_runner_engine("spot", store).status()
    assert summary.status is StageStatus.COMPLETE
    b = store.load("spot", "b", TState)
    assert [h.end_status for h in b.history] == [StageStatus.RETRY, StageStatus.COMPLETE]
    assert b.attempts == 2
    assert b.history[0].message.startswith("interrupted: SIGTERM")  # kept, not rewritten
    assert len(_runs(tmp_path, "a")) == 1  # COMPLETE stages were skipped
    assert len(_runs(tmp_path, "b")) == 2  # the interrupted attempt, then the retry
    assert len(_runs(tmp_path, "c")) == 1
    lease = store.load_lease("spot")
    assert lease is not None and lease.value.released
    assert lease.value.epoch == first_epoch + 1  # taken over cleanly, not by expiry


def test_sigterm_within_the_grace_period_lets_the_stage_finish_and_stops_before_the_next(
    env: dict[str, str],
    store: ec.StateStore,
    tmp_path: Path,
    procs: list[subprocess.Popen[str]],
    entry: str,
) -> None:
    # b works 1.5 s, well inside a 60 s grace period.
    slowish = {**env, SLOW_ENV: "b", SLOW_SECONDS_ENV: "1.5"}
    first = start(slowish, "graceful", "60", entry=entry)
    procs.append(first)
    wait_for(tmp_path / "b.started.1", first)
    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=60)

    assert first.returncode == EXIT_STOPPED, err
    b = store.load("graceful", "b", TState)
    assert b.status is StageStatus.COMPLETE and b.attempts == 1
    assert [h.end_status for h in b.history] == [StageStatus.COMPLETE]
    assert "c" not in store.load_task("graceful", TState)  # nothing new was started
    lease = store.load_lease("graceful")
    assert lease is not None and lease.value.released

    second = start(env, "graceful", entry=entry)
    procs.append(second)
    _, err = second.communicate(timeout=60)
    assert second.returncode == EXIT_OK, err
    assert [len(_runs(tmp_path, s)) for s in ("a", "b", "c")] == [1, 1, 1]
    assert build_runner_engine("graceful", store).status().status is StageStatus.COMPLETE


def test_without_a_signal_the_runner_maps_the_outcome_to_exit_codes(
    store: ec.StateStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SIDE_ENV, str(tmp_path))
    outcome = ContainerRunner(build_runner_engine("plain", store), grace_seconds=1).run()
    assert outcome.exit_code == EXIT_OK and outcome.signal is None
    assert outcome.summary is not None and outcome.summary.done

    # A time budget that cannot fit the (expected 5 s) next stage: work left, exit 3.
    engine = build_runner_engine("budget", store)
    engine.stages[0].expected_duration = 5.0
    outcome = ContainerRunner(engine, grace_seconds=1, time_budget=1.0).run()
    assert outcome.exit_code == EXIT_WORK_LEFT
    assert outcome.summary is not None and outcome.summary.next_stage == "a"


def test_grace_period_from_the_task_definition_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "ELEANOR_GRACE_SECONDS",
        "ELEANOR_STOP_TIMEOUT_SECONDS",
        "ELEANOR_GRACE_MARGIN_SECONDS",
    ):
        monkeypatch.delenv(name, raising=False)
    assert grace_from_env() == 25.0  # ECS's default stopTimeout 30 - 5
    monkeypatch.setenv("ELEANOR_STOP_TIMEOUT_SECONDS", "120")
    monkeypatch.setenv("ELEANOR_GRACE_MARGIN_SECONDS", "15")
    assert grace_from_env() == 105.0  # infra/ecs-runner.yaml's defaults
    monkeypatch.setenv("ELEANOR_GRACE_SECONDS", "7.5")
    assert grace_from_env() == 7.5  # an explicit value wins
    monkeypatch.setenv("ELEANOR_GRACE_SECONDS", "-1")
    with pytest.raises(ec.ConfigurationError):
        grace_from_env()


def test_a_second_signal_ends_the_grace_period_at_once(
    env: dict[str, str], store: ec.StateStore, tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    slow = {**env, SLOW_ENV: "b", SLOW_SECONDS_ENV: "60"}
    proc = start(slow, "twice", "600")
    procs.append(proc)
    wait_for(tmp_path / "b.started.1", proc)
    proc.send_signal(signal.SIGINT)
    pumping = read_until(proc, "letting stage 'b' finish")  # the first was handled
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)  # long before the 600 s grace
    pumping.join(30)
    assert proc.returncode == EXIT_INTERRUPTED
    b = store.load("twice", "b", TState)
    assert b.status is StageStatus.RETRY
    assert b.history[-1].message.startswith("interrupted: SIGINT received; a second signal")


def test_a_lease_left_by_a_killed_container_is_waited_for_then_taken_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from eleanor_cloud.clock import utc_now
    from eleanor_cloud.engine import TaskEngine
    from eleanor_cloud.engine.lease import LeaseManager
    from tests.aws.taskmod import Step

    monkeypatch.setenv(SIDE_ENV, str(tmp_path))
    store = ec.open_store("memory://")
    engine = TaskEngine(
        "orphan",
        [Step("a", work=0.0, expected=None)],
        TState,
        store,
        lease_ttl=1.0,
        clock_skew_tolerance=0.2,
    )
    engine.bind()
    # A container SIGKILLed past its stopTimeout: its lease stays live until it expires.
    dead = LeaseManager(
        store, "orphan", holder="dead-container", ttl=1.0, clock=utc_now, sleep=time.sleep
    )
    dead.acquire()
    started = time.monotonic()
    outcome = ContainerRunner(engine, grace_seconds=1).run()
    waited = time.monotonic() - started
    assert outcome.exit_code == EXIT_OK
    assert 0.5 <= waited < 10  # it waited for the expiry, not for a fixed time
    lease = store.load_lease("orphan")
    assert lease is not None and lease.value.holder == engine.holder
    assert lease.value.epoch == 2 and lease.value.released


def test_a_live_lease_beyond_the_lease_wait_fails_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from eleanor_cloud.clock import utc_now
    from eleanor_cloud.engine.lease import LeaseManager

    monkeypatch.setenv(SIDE_ENV, str(tmp_path))
    store = ec.open_store("memory://")
    engine = build_runner_engine("busy", store)
    engine.bind()
    LeaseManager(
        store, "busy", holder="other-container", ttl=600.0, clock=utc_now, sleep=time.sleep
    ).acquire()
    with pytest.raises(ec.LeaseHeld, match="other-container"):
        ContainerRunner(engine, grace_seconds=1, lease_wait=0.0).run()
    assert not (tmp_path / "a.runs").exists()


def test_the_runner_carries_the_lease_watch_between_attempts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The killed container's lease looks live, so the first attempt returns at once with
    # its watch; the runner waits the rest of the watch and hands it to the next attempt
    # (plus the time it waited), which continues it instead of watching from zero.
    from eleanor_cloud.clock import utc_now
    from eleanor_cloud.engine import TaskEngine
    from eleanor_cloud.engine.lease import LeaseManager
    from eleanor_cloud.engine.lease_watch import LeaseWatch
    from tests.aws.taskmod import Step

    monkeypatch.setenv(SIDE_ENV, str(tmp_path))
    store = ec.open_store("memory://")
    engine = TaskEngine(
        "carried",
        [Step("a", work=0.0, expected=None)],
        TState,
        store,
        lease_ttl=1.0,
        clock_skew_tolerance=0.2,
    )
    engine.bind()
    LeaseManager(
        store, "carried", holder="dead-container", ttl=1.0, clock=utc_now, sleep=time.sleep
    ).acquire()
    dead = store.load_lease("carried")
    assert dead is not None
    watches: list[LeaseWatch | None] = []
    run = engine.run

    def recording_run(**kwargs: Any) -> Any:
        watches.append(kwargs.get("lease_watch"))
        return run(**kwargs)

    monkeypatch.setattr(engine, "run", recording_run)
    runner = ContainerRunner(engine, grace_seconds=1)
    # The default lease wait comes from the engine's own lease options (TTL + skew),
    # twice over for latency.
    assert runner.lease_wait == pytest.approx(2 * (1.0 + 0.2))
    assert runner.run().exit_code == EXIT_OK
    first, *later = watches
    assert first is None and later
    assert all(w is not None and w.version == dead.version.token for w in later)
    lease = store.load_lease("carried")
    assert lease is not None and lease.value.epoch == 2 and lease.value.holder == engine.holder
