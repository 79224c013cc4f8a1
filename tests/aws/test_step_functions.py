"""The state machines executed by moto's Step Functions interpreter (a port of the ASL
interpreter Step Functions emulators use), each Lambda invocation a fresh process.

moto would run a Lambda function's code in Docker, which test machines need not have:
its ``LambdaFunction._invoke_lambda`` is replaced by a call of the real handler
(``tests.aws.taskmod:handler``) in a new Python process, with a Lambda-like context.
Everything else — Pass, Task with ResultSelector/ResultPath, Retry, Choice, Wait,
Succeed/Fail, the Distributed Map — is the interpreter's. The store is a local
directory here (the S3 path is covered by test_lambda.py).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.awslambda.models import LambdaFunction

import eleanor_cloud as ec
from eleanor_cloud.models import StageStatus
from tests.aws.taskmod import LAMBDA_STAGES, SIDE_ENV, SLOW_ENV, SLOW_SECONDS_ENV, TState

ROOT = Path(__file__).resolve().parents[2]
STATEMACHINES = ROOT / "infra" / "statemachine"
TIMEOUT = 2.5
MARGIN = 0.3


class FakeLambda:
    """Runs each invocation of the function in a fresh process; can inject failures."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.events: list[dict[str, Any]] = []
        self.inject: list[dict[str, str]] = []  # error payloads to return first
        # Kill the next invocation once this marker exists, as Lambda kills a function
        # that reaches its timeout (the stage named by SLOW_ENV works long enough).
        self.kill_at: Path | None = None

    def __call__(self, function: Any, event: Any = None) -> tuple[str, bool, str]:
        self.events.append(event)
        if self.inject:
            return json.dumps(self.inject.pop(0)), True, ""
        cmd = [
            sys.executable,
            "-m",
            "tests.aws.invoke_lambda",
            "tests.aws.taskmod:handler",
            json.dumps(event),
            str(TIMEOUT),
        ]
        if self.kill_at is not None:
            marker, self.kill_at = self.kill_at, None
            slow = {**self.env, SLOW_ENV: marker.name.split(".")[0], SLOW_SECONDS_ENV: "60"}
            killed = subprocess.Popen(
                cmd, cwd=ROOT, env=slow, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            deadline = time.monotonic() + 60
            while not marker.exists() and killed.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)  # bounded wait for the stage's own marker file
            killed.kill()
            killed.wait(30)
            return (
                json.dumps({"errorType": "Sandbox.Timedout", "errorMessage": "Task timed out"}),
                True,
                "",
            )
        proc = subprocess.run(
            cmd, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=120, check=False
        )
        if proc.returncode != 0:
            return json.dumps({"errorType": "Crash", "errorMessage": proc.stderr}), True, ""
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        if out["error"] is not None:
            return json.dumps(out["error"]), True, ""
        return json.dumps(out["result"]), False, ""


@pytest.fixture
def fake_lambda(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeLambda:
    (tmp_path / "side").mkdir()
    env = {
        **os.environ,
        "ELEANOR_STORE": str(tmp_path / "store"),
        "ELEANOR_SAFETY_MARGIN_SECONDS": str(MARGIN),
        SIDE_ENV: str(tmp_path / "side"),
        "PYTHONPATH": str(ROOT),
    }
    fake = FakeLambda(env)

    def invoke(function: Any, event: Any = None) -> tuple[str, bool, str]:
        return fake(function, event)  # a plain function, so it binds as a method

    monkeypatch.setattr(LambdaFunction, "_invoke_lambda", invoke)
    return fake


@pytest.fixture
def machines() -> Iterator[dict[str, str]]:
    """The function and both state machines, created from the files in infra/."""
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        iam = boto3.client("iam", region_name="us-east-1")
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "lambda.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
        role = iam.create_role(RoleName="runner", AssumeRolePolicyDocument=json.dumps(trust))[
            "Role"
        ]["Arn"]
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as archive:
            archive.writestr("example_task.py", "handler = None\n")
        function = boto3.client("lambda", region_name="us-east-1").create_function(
            FunctionName="stage-runner",
            Runtime="python3.12",
            Role=role,
            Handler="example_task.handler",
            Code={"ZipFile": code.getvalue()},
        )
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        arns = {}
        for name in ("task-loop", "fan-out"):
            definition = (
                (STATEMACHINES / f"{name}.asl.json")
                .read_text()
                .replace("${StageRunnerFunctionArn}", function["FunctionArn"])
            )
            arns[name] = sfn.create_state_machine(
                name=name, definition=definition, roleArn="arn:aws:iam::123456789012:role/sfn"
            )["stateMachineArn"]
        yield arns


def _execute(arn: str, execution_input: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Start an execution and wait (bounded) for the interpreter to finish it."""
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    execution = sfn.start_execution(stateMachineArn=arn, input=json.dumps(execution_input))
    deadline = time.monotonic() + 120
    while True:
        described = sfn.describe_execution(executionArn=execution["executionArn"])
        if described["status"] != "RUNNING":
            break
        assert time.monotonic() < deadline, "the execution did not finish"
        time.sleep(0.05)  # polling an asynchronous service's status, bounded above
    events = sfn.get_execution_history(executionArn=execution["executionArn"], maxResults=1000)[
        "events"
    ]
    return described, events


def _runs(fake: FakeLambda, stage: str) -> int:
    path = Path(fake.env[SIDE_ENV]) / f"{stage}.runs"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_task_loop_runs_the_task_to_completion(
    machines: dict[str, str], fake_lambda: FakeLambda
) -> None:
    # The first invocation fails as the store's transient error would: retried.
    fake_lambda.inject.append(
        {"errorType": "Unavailable", "errorMessage": "S3 throttled after retries"}
    )
    described, events = _execute(machines["task-loop"], {"task_id": "sfn-1", "work": 0.4})

    assert described["status"] == "SUCCEEDED", described
    output = json.loads(described["output"])
    assert output == {
        "task_id": "sfn-1",
        "status": "COMPLETE",
        "done": True,
        "next_stage": None,
        "wait_seconds": 0,
        "carry": {"lease_watch": None, "lease_waited_seconds": 0},
    }
    kinds = [e["type"] for e in events]
    assert kinds.count("TaskFailed") == 1  # the injected error...
    successes = kinds.count("TaskSucceeded")
    assert successes >= 2  # ...then several runs
    assert kinds.count("WaitStateEntered") == successes - 1  # looping between them
    assert len(fake_lambda.events) == successes + 1
    # The first event (the injected failure, and its retry) is the input as given; every
    # later one also carries the loop's lease watch (none: nobody else held the lease)
    # and the wait before it.
    event = {"task_id": "sfn-1", "work": 0.4}
    carried = {**event, "lease_watch": None, "lease_waited_seconds": 0}
    assert fake_lambda.events == [event, event] + [carried] * (successes - 1)
    assert [_runs(fake_lambda, s) for s in LAMBDA_STAGES] == [1] * len(LAMBDA_STAGES)


def test_task_loop_fails_the_execution_when_the_task_ends_in_error(
    machines: dict[str, str], fake_lambda: FakeLambda
) -> None:
    described, _ = _execute(
        machines["task-loop"], {"task_id": "sfn-bad", "work": 0.05, "fail": "s2"}
    )
    assert described["status"] == "FAILED"
    assert described["error"] == "TaskError"
    assert _runs(fake_lambda, "s3") == 0


def test_task_loop_fails_fast_on_a_bad_event(
    machines: dict[str, str], fake_lambda: FakeLambda
) -> None:
    described, _ = _execute(machines["task-loop"], {"task_id": "../x"})
    assert described["status"] == "FAILED" and described["error"] == "RunnerFailed"
    assert len(fake_lambda.events) == 1  # InvalidKey: not retried


def test_fan_out_runs_every_task(
    machines: dict[str, str], fake_lambda: FakeLambda, tmp_path: Path
) -> None:
    tasks = [{"task_id": f"fan-{i}", "work": 0.05} for i in range(3)]
    described, _ = _execute(machines["fan-out"], {"tasks": tasks})
    assert described["status"] == "SUCCEEDED", described
    assert json.loads(described["output"]) == {"tasks_processed": 3}
    store = ec.open_store(tmp_path / "store")
    assert sorted(store.list_tasks()) == ["fan-0", "fan-1", "fan-2"]
    for task in tasks:
        states = store.load_task(task["task_id"], TState)
        assert all(states[s].status is StageStatus.COMPLETE for s in LAMBDA_STAGES)


def test_a_lambda_killed_mid_stage_is_retried_and_its_attempt_recorded(
    machines: dict[str, str], fake_lambda: FakeLambda, tmp_path: Path
) -> None:
    # The first invocation is killed while s2 runs (no checkpoint, no lease release).
    fake_lambda.kill_at = tmp_path / "side" / "s2.started.1"
    described, events = _execute(
        machines["task-loop"], {"task_id": "killed", "work": 0.05, "lease_ttl": 1.0, "skew": 0.2}
    )

    assert described["status"] == "SUCCEEDED", described
    failed = [e["taskFailedEventDetails"]["error"] for e in events if e["type"] == "TaskFailed"]
    assert failed == ["Sandbox.Timedout"]  # retried by the Retry policy
    store = ec.open_store(tmp_path / "store")
    s2 = store.load("killed", "s2", TState)
    assert s2.status is StageStatus.COMPLETE and s2.attempts == 2
    first, second = s2.history
    # The lost attempt was found RUNNING under an expired lease and counted as failed.
    assert first.attempt == 1 and first.end_status is StageStatus.RETRY
    assert first.message.startswith("interrupted:")
    assert second.attempt == 2 and second.end_status is StageStatus.COMPLETE
    assert _runs(fake_lambda, "s1") == 1 and _runs(fake_lambda, "s2") == 2
