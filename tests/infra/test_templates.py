"""Static checks of infra/ that cfn-lint and checkov (``make infra-lint``) cannot make:
the ASL definitions against the handler's real output, names shared by templates and
code, and a written reason for every skipped checkov check."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

import eleanor_cloud as ec
from eleanor_cloud.aws import lambda_handler
from eleanor_cloud.aws.env import STORE_ENV
from eleanor_cloud.aws.lambda_handler import SAFETY_MARGIN_ENV
from eleanor_cloud.aws.runner import GRACE_MARGIN_ENV, STOP_TIMEOUT_ENV
from eleanor_cloud.engine import BaseStage, StageContext, TaskEngine
from eleanor_cloud.models import StageStatus
from tests.aws import asl
from tests.infra.templates import INFRA, TEMPLATES, load

ASL_FILES = sorted((INFRA / "statemachine").glob("*.asl.json"))


class _State(ec.BaseStageState[ec.SimpleRecordsResult]):
    pass


class _Noop(BaseStage[_State]):
    expected_duration = 0.1

    def run(self, state: _State, ctx: StageContext[_State]) -> None:
        return None


class _Ctx:
    aws_request_id = "r"

    def __init__(self, seconds: float) -> None:
        self._ends = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return int((self._ends - time.monotonic()) * 1000)


def _handler_outputs() -> list[dict[str, Any]]:
    """Real handler outputs: a run that pauses (work left) and one that completes."""
    store = ec.open_store("memory://")

    def build(event: Any) -> TaskEngine[_State]:
        stages = [_Noop("one"), _Noop("two", expected_duration=3.0)]
        return TaskEngine(event["task_id"], stages, _State, store)

    handler = lambda_handler(build, safety_margin=1.0)
    paused = handler({"task_id": "shape"}, _Ctx(3.0))  # "two" does not fit in 2 s
    done = handler({"task_id": "shape"}, _Ctx(10.0))
    assert paused["done"] is False and done["done"] is True
    return [paused, done]


def test_there_is_something_to_check() -> None:
    names = {p.name for p in TEMPLATES}
    assert {"state-bucket.yaml", "lambda-runner.yaml", "ecs-runner.yaml"} <= names
    assert "batch-shards.yaml" in names
    assert {p.name for p in ASL_FILES} == {
        "task-loop.asl.json",
        "fan-out.asl.json",
        "shard-fan-out.asl.json",
    }


def _for_moto_grammar(definition: dict[str, Any]) -> dict[str, Any]:
    """The definition without ``ReaderConfig.ItemsPointer``, which moto's grammar (a port
    of an emulator's, older than that field) does not know; nothing else is removed."""
    out = json.loads(json.dumps(definition))
    for state in out["States"].values():
        config = state.get("ItemReader", {}).get("ReaderConfig", {})
        config.pop("ItemsPointer", None)
    return out


@pytest.mark.parametrize("path", ASL_FILES, ids=lambda p: p.name)
def test_definitions_are_valid_asl(path: Path) -> None:
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    # The ASL grammar (moto's port of the one Step Functions emulators use) accepts it...
    definition = json.loads(path.read_text())
    AmazonStateLanguageParser.parse(json.dumps(_for_moto_grammar(definition)))
    # ...and every transition lands on a state that exists, every state is reachable.

    def check(machine: dict[str, Any]) -> None:
        states = machine["States"]
        assert machine["StartAt"] in states
        targets = {machine["StartAt"]}
        for name, state in states.items():
            nexts = [state.get("Next"), state.get("Default")]
            nexts += [c["Next"] for c in state.get("Choices", [])]
            nexts += [c["Next"] for c in state.get("Catch", [])]
            for target in filter(None, nexts):
                assert target in states, f"{name} -> {target}"
                targets.add(target)
            terminal = state["Type"] in ("Succeed", "Fail") or state.get("End") is True
            assert terminal or state.get("Next") or state["Type"] == "Choice", name
            if "ItemProcessor" in state:
                check(state["ItemProcessor"])
        assert targets == set(states), f"unreachable: {set(states) - targets}"

    check(definition)


def test_choice_and_wait_paths_match_the_handler_output() -> None:
    loop = asl.load("task-loop.asl.json")
    task = loop["States"]["RunStages"]
    selector = dict(task["ResultSelector"])
    carry = selector.pop("carry")
    selected = {k[:-2]: v for k, v in selector.items()}
    outputs = _handler_outputs()
    for output in outputs:
        for key, path in selected.items():
            # Every selected path exists in every real output, with a JSON-able type.
            value = asl.get_path({"Payload": output}, path)
            assert path == f"$.Payload.{key}" and value == output[key]
    # The carry into the next event: the response's lease watch, and the very value the
    # Wait state waits (the wait the handler may credit to the watch).
    assert carry == {
        "lease_watch.$": "$.Payload.lease_watch",
        "lease_waited_seconds.$": "$.Payload.wait_seconds",
    }
    assert task["Parameters"]["Payload.$"] == "States.JsonMerge($.event, $.run.carry, false)"
    assert loop["States"]["KeepEvent"]["Parameters"] == {"event.$": "$", "run": {"carry": {}}}
    assert all("lease_watch" in o for o in outputs)  # never missing: the path must resolve
    result_path = task["ResultPath"]
    choice = loop["States"]["IsTaskDone"]
    statuses = {s.value for s in StageStatus}
    for rule in choice["Choices"]:
        prefix, _, key = rule["Variable"].rpartition(".")
        assert prefix == result_path and key in selected, rule
        if "StringEquals" in rule:
            assert rule["StringEquals"] in statuses
        else:
            assert key == "done" and rule["BooleanEquals"] is True
    # ERROR/CANCELED tasks are also done: they must be routed before the done rule.
    order = [r.get("StringEquals", "done") for r in choice["Choices"]]
    assert order.index("done") == len(order) - 1
    wait = loop["States"][choice["Default"]]
    assert wait["SecondsPath"] == f"{result_path}.wait_seconds"
    assert all(isinstance(o["wait_seconds"], int) for o in outputs)
    # Lambda errors worth retrying include the store's transient one.
    retried = {e for r in task["Retry"] for e in r["ErrorEquals"]}
    assert {"Lambda.ServiceException", "Lambda.TooManyRequestsException", "Unavailable"} <= retried
    assert all(r["BackoffRate"] > 1 for r in task["Retry"])


def test_fan_out_runs_the_same_loop_per_item_in_distributed_mode() -> None:
    loop = asl.load("task-loop.asl.json")
    fan = asl.load("fan-out.asl.json")
    (map_state,) = fan["States"].values()
    assert map_state["Type"] == "Map" and map_state["ItemsPath"] == "$.tasks"
    processor = map_state["ItemProcessor"]
    assert processor["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    assert processor["StartAt"] == loop["StartAt"]
    assert processor["States"] == loop["States"]


def test_every_asl_placeholder_is_substituted_by_the_template() -> None:
    template = load(INFRA / "lambda-runner.yaml")
    machines = {
        r["Properties"]["DefinitionUri"]: r["Properties"]["DefinitionSubstitutions"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Serverless::StateMachine"
    }
    assert set(machines) == {f"statemachine/{p.name}" for p in ASL_FILES}
    for uri, substitutions in machines.items():
        placeholders = set(re.findall(r"\$\{(\w+)\}", (INFRA / uri).read_text()))
        assert placeholders == set(substitutions), uri


def _env_names(template: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for resource in template["Resources"].values():
        props = resource.get("Properties", {})
        names |= set(props.get("Environment", {}).get("Variables", {}))
        for container in props.get("ContainerDefinitions", []):
            names |= {e["Name"] for e in container.get("Environment", [])}
    return names


def test_templates_and_code_agree_on_names_and_limits() -> None:
    assert _env_names(load(INFRA / "lambda-runner.yaml")) == {STORE_ENV, SAFETY_MARGIN_ENV}
    ecs = load(INFRA / "ecs-runner.yaml")
    assert _env_names(ecs) == {STORE_ENV, STOP_TIMEOUT_ENV, GRACE_MARGIN_ENV}
    # Fargate allows a stopTimeout of at most 120 s.
    assert ecs["Parameters"]["StopTimeoutSeconds"]["MaxValue"] == 120
    task_defs = {n for n, r in ecs["Resources"].items() if r["Type"] == "AWS::ECS::TaskDefinition"}
    assert task_defs == {"RunnerTaskDefinition", "ShardTaskDefinition"}
    (container,) = ecs["Resources"]["RunnerTaskDefinition"]["Properties"]["ContainerDefinitions"]
    assert container["StopTimeout"] == {"Ref": "StopTimeoutSeconds"}
    assert container["EntryPoint"] == ["eleanor-cloud"] and container["Command"][0] == "run"
    assert container["LinuxParameters"]["InitProcessEnabled"] is True  # forwards SIGTERM
    cluster = ecs["Resources"]["Cluster"]["Properties"]
    spot = [
        s
        for s in cluster["DefaultCapacityProviderStrategy"]
        if s["CapacityProvider"] == "FARGATE_SPOT"
    ]
    assert spot and spot[0]["Weight"] >= 1
    # Both runners get exactly the state bucket's runner policy.
    task_role = ecs["Resources"]["TaskRole"]["Properties"]
    assert task_role["ManagedPolicyArns"] == [{"Ref": "StageRunnerPolicyArn"}]
    assert "Policies" not in task_role
    function = load(INFRA / "lambda-runner.yaml")["Resources"]["StageRunnerFunction"]
    assert function["Properties"]["Policies"] == [{"Ref": "StageRunnerPolicyArn"}]


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_every_skipped_checkov_check_has_a_written_reason(path: Path) -> None:
    for name, resource in load(path)["Resources"].items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert re.fullmatch(r"CKV2?_AWS_\d+", skip["id"]), (name, skip)
            assert len(skip.get("comment", "").split()) >= 8, (name, skip)


def test_the_bucket_is_tls_only_versioned_private_and_expires_old_tasks_by_prefix() -> None:
    # moto's CloudFormation skips these properties, so they are checked as written.
    template = load(INFRA / "state-bucket.yaml")
    resources = template["Resources"]
    bucket = resources["StateBucket"]["Properties"]
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert len(bucket["PublicAccessBlockConfiguration"]) == 4
    rules = {r["Id"]: r for r in bucket["LifecycleConfiguration"]["Rules"]}
    expire = rules["expire-old-tasks"]
    assert expire["Prefix"] == {
        "Fn::If": [
            "DefaultExpirationPrefix",
            {"Fn::Sub": "${StatePrefix}/"},
            {"Ref": "ExpirationPrefix"},
        ]
    }
    assert expire["ExpirationInDays"]["Fn::If"][1] == {"Ref": "TaskExpirationDays"}
    noncurrent = rules["expire-noncurrent-versions"]["NoncurrentVersionExpiration"]
    assert noncurrent == {"NoncurrentDays": {"Ref": "NoncurrentVersionExpirationDays"}}
    assert resources["StateBucket"]["DeletionPolicy"] == "Retain"
    policy = resources["StateBucketPolicy"]["Properties"]["PolicyDocument"]
    (tls,) = [s for s in policy["Statement"] if s["Sid"] == "DenyInsecureTransport"]
    assert tls["Effect"] == "Deny" and tls["Principal"] == "*" and tls["Action"] == "s3:*"
    assert tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert tls["Resource"] == [
        {"Fn::GetAtt": ["StateBucket", "Arn"]},
        {"Fn::Sub": "${StateBucket.Arn}/*"},
    ]
    assert template["Parameters"]["Encryption"]["AllowedValues"] == ["SSE-S3", "SSE-KMS"]
