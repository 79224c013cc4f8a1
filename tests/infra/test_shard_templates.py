"""Static checks of the fan-out pieces of infra/ against the code: the shard fan-out
state machine's paths against real handler outputs and a real persisted plan, its
error names against the handler's exceptions, and the Lambda, Batch and image
definitions against the runner's arguments, exit codes and environment."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import eleanor_cloud as ec
import eleanor_cloud.aws as ec_aws
from eleanor_cloud import keys
from eleanor_cloud.aws import EXIT_INTERRUPTED, EXIT_STOPPED, lambda_handler
from eleanor_cloud.aws.env import GRACE_MARGIN_ENV, STOP_TIMEOUT_ENV, STORE_ENV
from eleanor_cloud.aws.lambda_shard import parse_shard
from eleanor_cloud.engine import BaseStage, Page, Shard, StageContext, TaskEngine
from eleanor_cloud.engine.fanout import NotPlanned
from eleanor_cloud.errors import InvalidKey
from tests.aws import asl
from tests.infra.templates import INFRA, load

SHARD_ARN = "arn:aws:lambda:us-east-1:123456789012:function:shard-runner"


class _State(ec.BaseStageState[ec.SimpleRecordsResult]):
    pass


class _Fan(BaseStage[_State]):
    expected_duration = 0.1

    def plan(self, state: _State, ctx: StageContext[_State]) -> list[Shard]:
        return [Shard(f"s{i}", {"n": i}) for i in range(3)]

    def run(self, state: _State, ctx: StageContext[_State]) -> None:
        def read(cursor: Any, limit: int) -> Page:
            return Page([ctx.shard.id], cursor=None, total=1)

        for batch in ctx.records(read):
            for item in batch:
                batch.ok(item)


class _Ctx:
    aws_request_id = "r"

    def __init__(self, seconds: float) -> None:
        self._ends = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return int((self._ends - time.monotonic()) * 1000)


def _machine() -> dict[str, Any]:
    return asl.load(
        "shard-fan-out.asl.json", ShardRunnerFunctionArn=SHARD_ARN, StateBucketName="bucket"
    )


def _outputs() -> tuple[ec.StateStore, dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A real planning response, shard response and joining response."""
    store = ec.open_store("memory://")

    def build(event: Any) -> TaskEngine[_State]:
        return TaskEngine(event["task_id"], [_Fan("fan")], _State, store)

    handler = lambda_handler(build, safety_margin=1.0)
    planned = handler({"task_id": "shape"}, _Ctx(10.0))
    event = {"task_id": "shape", "stage": "fan", "plan_id": planned["fan_out"]["plan_id"]}
    shards = [handler({**event, "shard": f"s{i}"}, _Ctx(10.0)) for i in range(3)]
    joined = handler({"task_id": "shape"}, _Ctx(10.0))
    assert planned["fan_out"] is not None and joined["fan_out"] is None and joined["done"]
    return store, planned, shards[0], joined


def _selected(selector: dict[str, Any], output: dict[str, Any]) -> None:
    for path in selector.values():
        if isinstance(path, dict):
            _selected(path, output)
        else:
            asl.get_path({"Payload": output}, path)  # every path exists in the output


def test_the_shard_machine_reads_what_the_handler_and_the_plan_provide() -> None:
    store, planned, shard, joined = _outputs()
    states = _machine()["States"]
    run_task, run_shards = states["RunTask"], states["RunShards"]
    for output in (planned, joined):
        _selected(run_task["ResultSelector"], output)
    assert run_task["ResultSelector"]["fan_out.$"] == "$.Payload.fan_out"
    choice = states["IsTaskDone"]["Choices"]
    assert choice[-1] == {"Variable": "$.run.fan_out", "IsNull": False, "Next": "RunShards"}
    # The ItemReader reads the plan at the key the handler reports, in the bucket the
    # template substitutes; ItemsPointer finds the shards in the stored envelope.
    reader = run_shards["ItemReader"]
    assert reader["Parameters"] == {"Bucket": "bucket", "Key.$": "$.run.fan_out.plan_key"}
    key = planned["fan_out"]["plan_key"]
    assert key == keys.plan_key(store.prefix, "shape", "fan")
    document = json.loads(store.backend.read(key)[0])
    items = asl.json_pointer(document, reader["ReaderConfig"]["ItemsPointer"])
    assert [i["id"] for i in items] == ["s0", "s1", "s2"]
    assert len(items) == planned["fan_out"]["shards"]
    assert "ItemsPath" not in run_shards  # Distributed Map: not with an ItemReader
    # Each item becomes a shard event the handler reads as one, for that plan.
    data = {"event": {"task_id": "shape"}, "run": {"fan_out": planned["fan_out"]}}
    context = {"Map": {"Item": {"Index": 1, "Value": items[1]}}}
    item = asl.apply_template(run_shards["ItemSelector"], data, context)
    processor = run_shards["ItemProcessor"]
    first = asl.apply_template(processor["States"]["KeepShardEvent"]["Parameters"], item)
    assert first["event"] == {
        "task_id": "shape",
        "stage": "fan",
        "shard": "s1",
        "plan_id": planned["fan_out"]["plan_id"],
    }
    read = parse_shard(first["event"])
    assert read is not None and (read.stage, read.shard) == ("fan", "s1")
    _selected(processor["States"]["RunShard"]["ResultSelector"], shard)
    assert processor["States"]["RunShard"]["Parameters"]["FunctionName"] == SHARD_ARN
    assert processor["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}


def test_the_bad_shard_errors_the_machine_names_are_the_handlers() -> None:
    run_shard = _machine()["States"]["RunShards"]["ItemProcessor"]["States"]["RunShard"]
    bad, rest = run_shard["Catch"]
    assert bad["Next"] == "BadShardEvent" and rest["ErrorEquals"] == ["States.ALL"]
    classes = [ec_aws.UnknownStage, ec_aws.UnknownShard, ec_aws.StalePlan, ec_aws.InvalidEvent]
    assert set(bad["ErrorEquals"]) == {c.__name__ for c in [*classes, NotPlanned, InvalidKey]}
    # None of them is retried: the Retry rules name only transient errors.
    retried = {e for rule in run_shard["Retry"] for e in rule["ErrorEquals"]}
    assert retried.isdisjoint(bad["ErrorEquals"])
    # The task loop's part is the task loop's: same retries, same endings.
    loop = asl.load("task-loop.asl.json")["States"]
    states = _machine()["States"]
    assert states["RunTask"]["Retry"] == loop["RunStages"]["Retry"] == run_shard["Retry"]
    for name in ("TaskComplete", "TaskFailed", "TaskCanceled", "RunnerFailed"):
        assert states[name] == loop[name]


def test_the_shard_lambda_and_the_machine_get_no_more_than_they_need() -> None:
    template = load(INFRA / "lambda-runner.yaml")
    resources = template["Resources"]
    function = resources["ShardRunnerFunction"]["Properties"]
    assert function["Policies"] == [{"Ref": "ShardWorkerPolicyArn"}]
    assert function["Handler"] == resources["StageRunnerFunction"]["Properties"]["Handler"]
    concurrency = template["Parameters"]["ShardReservedConcurrency"]["Default"]
    assert _machine()["States"]["RunShards"]["MaxConcurrency"] <= concurrency
    machine = resources["ShardFanOutStateMachine"]["Properties"]
    assert machine["DefinitionUri"] == "statemachine/shard-fan-out.asl.json"
    assert {"Ref": "PlanReaderPolicy"} in machine["Policies"]
    # The map reads plans and nothing else of the bucket, and writes nothing there.
    document = resources["PlanReaderPolicy"]["Properties"]["PolicyDocument"]
    condition, with_key, plain = document["Statement"]["Fn::If"]
    assert condition == "StateKeyGiven"
    for statements in (plain, with_key):
        (read,) = [s for s in statements if s["Sid"] == "ReadShardPlans"]
        assert read["Action"] == "s3:GetObject"
        assert read["Resource"]["Fn::Sub"].endswith("${StateBucketName}/${StatePrefix}/*/plan.json")
    assert [s["Action"] for s in with_key if s["Sid"] == "DecryptShardPlans"] == ["kms:Decrypt"]
    text = (INFRA / "lambda-runner.yaml").read_text()
    assert "s3:PutObject" not in text and "s3:DeleteObject" not in text


def test_the_batch_job_runs_the_shard_runner_and_retries_only_resumable_exits() -> None:
    template = load(INFRA / "batch-shards.yaml")
    resources = template["Resources"]
    job = resources["ShardJobDefinition"]["Properties"]
    assert job["PlatformCapabilities"] == ["FARGATE"] and job["Type"] == "container"
    container = job["ContainerProperties"]
    command = container["Command"]
    # Every placeholder has a default, so an unset one never reaches the runner.
    assert {c[len("Ref::") :] for c in command if c.startswith("Ref::")} == set(job["Parameters"])
    argv = [job["Parameters"][c[5:]] if c.startswith("Ref::") else c for c in command]
    assert argv[1:] == ["--task-id", "set-me-per-job", "--stage", "set-me-per-job", "--plan-id", ""]
    assert "--shard" not in command  # the array index chooses the shard
    names = {e["Name"] for e in container["Environment"]}
    assert names == {STORE_ENV, STOP_TIMEOUT_ENV, GRACE_MARGIN_ENV}
    assert container["LinuxParameters"]["InitProcessEnabled"] is True  # forwards SIGTERM
    rules = job["RetryStrategy"]["EvaluateOnExit"]
    retried = {int(r["OnExitCode"]) for r in rules if r["Action"] == "RETRY"}
    assert retried == {EXIT_STOPPED, EXIT_INTERRUPTED, 137}
    assert rules[-1] == {"OnReason": "*", "Action": "EXIT"}
    role = resources["JobRole"]["Properties"]
    assert role["ManagedPolicyArns"] == [{"Ref": "ShardWorkerPolicyArn"}]
    compute = resources["ComputeEnvironment"]["Properties"]["ComputeResources"]
    assert compute["Type"] == "FARGATE_SPOT"


def test_the_image_has_a_shard_worker_target_and_keeps_the_runner_as_default() -> None:
    text = (INFRA / "container" / "Dockerfile").read_text()
    stages = re.findall(r"^FROM \S+ AS (\S+)$", text, flags=re.MULTILINE)
    assert stages == ["base", "shard-worker", "runner"]  # the last is the default target
    worker = text.split("AS shard-worker", 1)[1].split("FROM ", 1)[0]
    assert 'ENTRYPOINT ["python", "-m", "eleanor_cloud.aws"]' in worker
    runner = text.split("AS runner", 1)[1]
    assert 'ENTRYPOINT ["eleanor-cloud"]' in runner


def test_the_ecs_shard_task_runs_the_shard_runner_with_only_the_shard_policy() -> None:
    template = load(INFRA / "ecs-runner.yaml")
    resources = template["Resources"]
    assert template["Parameters"]["ShardWorkerPolicyArn"]["Default"] == ""  # optional
    for name in ("ShardTaskRole", "ShardTaskDefinition"):
        assert resources[name]["Condition"] == "ShardWorkers"
    role = resources["ShardTaskRole"]["Properties"]
    assert role["ManagedPolicyArns"] == [{"Ref": "ShardWorkerPolicyArn"}]
    (container,) = resources["ShardTaskDefinition"]["Properties"]["ContainerDefinitions"]
    assert container["EntryPoint"] == ["python", "-m", "eleanor_cloud.aws"]
    command = container["Command"]
    assert command[0] == {"Ref": "TaskFactory"}
    assert command[1::2] == ["--task-id", "--stage", "--shard"]
    assert container["StopTimeout"] == {"Ref": "StopTimeoutSeconds"}
    assert container["LinuxParameters"]["InitProcessEnabled"] is True
    names = {e["Name"] for e in container["Environment"]}
    assert names == {STORE_ENV, STOP_TIMEOUT_ENV, GRACE_MARGIN_ENV}
