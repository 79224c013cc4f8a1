"""The Lambda handler, driven by the real task-loop state machine definition.

The end-to-end test runs every invocation in a fresh Python process (a new Lambda
container each time) against a moto S3 server on 127.0.0.1, with a context whose
remaining time is short enough to force several invocations.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import eleanor_cloud as ec
from eleanor_cloud.aws import StageDoesNotFit, lambda_handler
from eleanor_cloud.engine import BaseStage, StageContext, TaskEngine
from eleanor_cloud.models import RetryPolicy, StageStatus
from tests.aws import asl
from tests.aws.taskmod import LAMBDA_STAGES, SIDE_ENV, TState

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 2.5  # the simulated function timeout, seconds
MARGIN = 0.3  # ELEANOR_SAFETY_MARGIN_SECONDS


class Context:
    """A Lambda context whose remaining time runs down on the real monotonic clock."""

    aws_request_id = "test-request"

    def __init__(self, seconds: float) -> None:
        self._ends = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._ends - time.monotonic()) * 1000))


def _invoke_in_fresh_process(env: dict[str, str], event: Any) -> dict[str, Any]:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.aws.invoke_lambda",
            "tests.aws.taskmod:handler",
            json.dumps(event),
            str(TIMEOUT),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def test_state_machine_loop_completes_the_task_across_fresh_processes(
    moto_server_url: str, s3_bucket: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL_S3": moto_server_url,
        "ELEANOR_STORE": f"s3://{s3_bucket}/ck",
        "ELEANOR_SAFETY_MARGIN_SECONDS": str(MARGIN),
        SIDE_ENV: str(tmp_path),
        "PYTHONPATH": str(ROOT),
    }
    store = ec.open_store(f"s3://{s3_bucket}/ck", endpoint_url=moto_server_url)
    invocations: list[dict[str, Any]] = []

    def invoke(function_name: str, payload: Any) -> Any:
        assert function_name.endswith(":function:x")
        out = _invoke_in_fresh_process(env, payload)
        assert out["error"] is None, out["error"]
        invocations.append(out)
        # Every invocation released the lease before returning.
        lease = store.load_lease("lambda-loop")
        assert lease is not None and lease.value.released
        return out["result"]

    execution = asl.run(
        asl.load("task-loop.asl.json"), {"task_id": "lambda-loop", "work": 0.4}, invoke
    )

    assert execution.status == "SUCCEEDED", execution
    assert execution.output["done"] is True and execution.output["status"] == "COMPLETE"
    # The remaining time forced several invocations, each making progress (no idle wait).
    assert len(invocations) >= 2
    assert execution.waits == [0] * (len(invocations) - 1)
    # No invocation ran past its budget: each returned before the function timeout,
    # and none started a stage it could not finish (1.0 s expected) before the margin.
    for out in invocations:
        assert out["elapsed"] < TIMEOUT, out
        assert out["result"]["invocation"]["budget_seconds"] <= TIMEOUT - MARGIN
    # Each stage ran exactly once, in order, spread over the processes.
    ran = [name for out in invocations for name in out["result"]["stages_run"]]
    assert ran == list(LAMBDA_STAGES)
    pids = set()
    for name in LAMBDA_STAGES:
        lines = (tmp_path / f"{name}.runs").read_text().splitlines()
        assert len(lines) == 1, (name, lines)
        pids.add(lines[0].split()[0])
    assert len(pids) == len(invocations)
    states = store.load_task("lambda-loop", TState)
    assert all(
        states[n].status is StageStatus.COMPLETE and states[n].attempts == 1 for n in LAMBDA_STAGES
    )


class Gate(BaseStage[TState]):
    """Blocks until the test opens the gate: a previous invocation still running."""

    name = "gate"
    expected_duration = 0.5

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.open = threading.Event()
        self.runs = 0

    def run(self, state: TState, ctx: StageContext[TState]) -> None:
        self.runs += 1
        self.entered.set()
        assert self.open.wait(30), "the test never opened the gate"


def test_a_retry_of_the_same_event_while_the_first_still_runs_waits_and_loops() -> None:
    store = ec.open_store("memory://")
    gate = Gate()

    def build(event: Any) -> TaskEngine[TState]:
        return TaskEngine(
            event["task_id"], [gate], TState, store, lease_ttl=20.0, clock_skew_tolerance=1.0
        )

    handler = lambda_handler(build, safety_margin=1.0)
    first: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: first.update(handler({"task_id": "retried"}, Context(30.0)))
    )
    thread.start()
    try:
        assert gate.entered.wait(30)
        second = handler({"task_id": "retried"}, Context(30.0))
    finally:
        gate.open.set()
        thread.join(30)

    # The retry saw the live lease: not done, not an error; wait for the lease, loop.
    assert second["done"] is False and second["lease_held"] is True
    assert second["status"] == "RUNNING" and second["next_stage"] == "gate"
    assert 1 <= second["wait_seconds"] <= 21
    assert second["stages_run"] == []
    # The first invocation finished the task; the stage ran once.
    assert first["done"] is True and first["status"] == "COMPLETE"
    assert gate.runs == 1
    lease = store.load_lease("retried")
    assert lease is not None and lease.value.released


class Quick(BaseStage[TState]):
    def run(self, state: TState, ctx: StageContext[TState]) -> None:
        state.note = "ran"


class Boom(BaseStage[TState]):
    def run(self, state: TState, ctx: StageContext[TState]) -> None:
        raise RuntimeError("boom")


def test_a_task_in_error_fails_the_state_machine() -> None:
    store = ec.open_store("memory://")

    def build(event: Any) -> TaskEngine[TState]:
        return TaskEngine(
            event["task_id"],
            [Quick("ok", expected_duration=0.1), Boom("bad", expected_duration=0.1)],
            TState,
            store,
            retry_policy=RetryPolicy.NONE,
        )

    handler = lambda_handler(build, safety_margin=0.5)
    execution = asl.run(
        asl.load("task-loop.asl.json"),
        {"task_id": "fails"},
        lambda _fn, payload: handler(payload, Context(10.0)),
    )
    assert execution.status == "FAILED" and execution.error == "TaskError"
    assert execution.visited[-2:] == ["IsTaskDone", "TaskFailed"]
    assert execution.output["run"] == {
        "task_id": "fails",
        "status": "ERROR",
        "done": True,
        "next_stage": None,
        "wait_seconds": 0,
        # What the loop would carry into a next invocation: no lease watch, no wait.
        "carry": {"lease_watch": None, "lease_waited_seconds": 0},
    }


def test_a_canceled_task_fails_the_state_machine_as_canceled() -> None:
    store = ec.open_store("memory://")

    def build(event: Any) -> TaskEngine[TState]:
        return TaskEngine(event["task_id"], [Quick("only", expected_duration=0.1)], TState, store)

    engine = build({"task_id": "gone"})
    engine.bind()
    engine.cancel()
    handler = lambda_handler(build, safety_margin=0.5)
    execution = asl.run(
        asl.load("task-loop.asl.json"),
        {"task_id": "gone"},
        lambda _fn, payload: handler(payload, Context(10.0)),
    )
    assert execution.status == "FAILED" and execution.error == "TaskCanceled"


def test_a_stage_longer_than_any_invocation_is_an_error_not_an_endless_loop() -> None:
    store = ec.open_store("memory://")

    def build(event: Any) -> TaskEngine[TState]:
        return TaskEngine(event["task_id"], [Quick("long", expected_duration=100.0)], TState, store)

    handler = lambda_handler(build, safety_margin=1.0)
    with pytest.raises(StageDoesNotFit, match=r"'long' expects 100\.0s"):
        handler({"task_id": "too-long"}, Context(5.0))
    states = store.load_task("too-long", TState)
    assert "long" not in states  # never started
    lease = store.load_lease("too-long")
    assert lease is not None and lease.value.released


def test_time_spent_taking_a_dead_lease_over_is_not_a_stage_that_cannot_fit() -> None:
    from datetime import timedelta

    from eleanor_cloud.clock import format_ts, utc_now
    from eleanor_cloud.store import Lease

    store = ec.open_store("memory://")

    def build(event: Any) -> TaskEngine[TState]:
        return TaskEngine(
            event["task_id"],
            [Quick("q", expected_duration=1.5)],
            TState,
            store,
            lease_ttl=1.0,
            clock_skew_tolerance=0.2,
        )

    # The previous invocation was killed holding the lease: nobody renews or releases it.
    build({"task_id": "dead"}).bind()
    now = utc_now()
    store.write_lease(
        Lease(
            task_id="dead",
            holder="killed-invocation",
            epoch=1,
            acquired_at=format_ts(now - timedelta(seconds=2.0)),
            expires_at=format_ts(now - timedelta(seconds=1.0)),
            ttl_seconds=1.0,
        ),
        replaces=None,  # created: nobody held it before
    )
    handler = lambda_handler(build, safety_margin=0.5)
    # A budget of 2s: watching the dead lease for 1.2s before the takeover leaves too
    # little for the 1.5s stage, which a whole invocation would fit: loop, don't fail.
    first = handler({"task_id": "dead"}, Context(2.5))
    assert first["done"] is False and first["stages_run"] == []
    assert first["wait_seconds"] == 0 and first["lease_held"] is False
    lease = store.load_lease("dead")
    assert lease is not None and lease.value.released and lease.value.epoch == 2
    second = handler({"task_id": "dead"}, Context(2.5))
    assert second["done"] is True and second["stages_run"] == ["q"]


def test_an_invocation_with_no_time_beyond_the_margin_is_a_configuration_error() -> None:
    handler = lambda_handler(lambda event: pytest.fail("must not build"), safety_margin=10.0)
    with pytest.raises(ec.ConfigurationError, match="safety margin"):
        handler({"task_id": "t"}, Context(5.0))


@pytest.mark.parametrize("event", [{}, {"task_id": 7}, "t", {"task_id": "../escape"}])
def test_a_bad_event_is_refused_before_any_work(event: Any) -> None:
    handler = lambda_handler(lambda event: pytest.fail("must not build"), safety_margin=1.0)
    with pytest.raises((ec.InvalidState, ec.InvalidKey)):
        handler(event, Context(5.0))


def test_the_safety_margin_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    store = ec.open_store("memory://")
    monkeypatch.setenv("ELEANOR_SAFETY_MARGIN_SECONDS", "4")

    def build(event: Any) -> TaskEngine[TState]:
        return TaskEngine(event["task_id"], [Quick("q", expected_duration=0.1)], TState, store)

    out = lambda_handler(build)({"task_id": "env-margin"}, Context(10.0))
    assert out["done"] is True
    assert 5.0 <= out["invocation"]["budget_seconds"] <= 6.0
    monkeypatch.setenv("ELEANOR_SAFETY_MARGIN_SECONDS", "soon")
    with pytest.raises(ec.ConfigurationError, match="ELEANOR_SAFETY_MARGIN_SECONDS"):
        lambda_handler(build)({"task_id": "env-margin"}, Context(10.0))


class Flaky(BaseStage[TState]):
    name = "flaky"
    expected_duration = 0.1

    def run(self, state: TState, ctx: StageContext[TState]) -> None:
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails")


def test_a_retry_backoff_longer_than_any_invocation_is_an_error_too() -> None:
    from eleanor_cloud.engine import Backoff

    store = ec.open_store("memory://")

    def build(event: Any) -> TaskEngine[TState]:
        return TaskEngine(
            event["task_id"],
            [Flaky()],
            TState,
            store,
            backoff=Backoff(initial=100.0, max_delay=100.0, jitter=0.0),
        )

    handler = lambda_handler(build, safety_margin=1.0)
    first = handler({"task_id": "backoff"}, Context(10.0))
    assert first["done"] is False and first["stages_run"] == ["flaky"]
    assert first["wait_seconds"] == 0  # it made progress: loop at once
    with pytest.raises(StageDoesNotFit, match=r"backoff 100\.000s"):
        handler({"task_id": "backoff"}, Context(10.0))
