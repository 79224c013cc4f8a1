"""Deploy infra/state-bucket.yaml into moto's CloudFormation and run a task on it.

The task runs as an IAM user that holds nothing but the stack's runner policy, with
moto's IAM enforcement on: the run completing proves the policy is sufficient; the
refusals prove it is narrow. moto does not evaluate the ``s3:prefix`` condition (it
ignores StringLike), so that statement is also checked with a small evaluator below.

The bucket policy's DenyUnconditionalStateWrites cannot be run here: moto's
CloudFormation does not create ``AWS::S3::BucketPolicy``, and moto's IAM evaluation
does not know the ``Null`` operator or the ``s3:if-none-match``/``s3:if-match`` keys
on PutObject (it would take a Deny with that condition as unconditional and refuse
every write). So its document is evaluated by the same small evaluator, and the run
records the headers of every PutObject the runner sends: each must carry one of the
two, or that Deny would refuse it on AWS.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.core.authorization import enable_iam_authentication

import eleanor_cloud as ec
from eleanor_cloud.engine import BaseStage, StageContext, TaskEngine
from eleanor_cloud.models import StageStatus
from tests.infra.templates import INFRA, load

TEMPLATE = (INFRA / "state-bucket.yaml").read_text()


class _State(ec.BaseStageState[ec.SimpleRecordsResult]):
    note: str = ""


class _Step(BaseStage[_State]):
    def run(self, state: _State, ctx: StageContext[_State]) -> ec.SimpleRecordsResult:
        state.note = self.name
        return ec.SimpleRecordsResult(total_count=1, success_count=1)


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


def _deploy(**parameters: str) -> dict[str, str]:
    cfn = boto3.client("cloudformation", region_name="us-east-1")
    # moto has no CloudFormation model for AWS::S3::BucketPolicy and says so; the
    # TLS-only bucket policy is covered by cfn-lint and checkov instead.
    with pytest.warns(UserWarning, match="AWS::S3::BucketPolicy"):
        cfn.create_stack(
            StackName="state",
            TemplateBody=TEMPLATE,
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        )
    stack = cfn.describe_stacks(StackName="state")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    return {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}


def _policy(arn: str) -> dict[str, Any]:
    iam = boto3.client("iam", region_name="us-east-1")
    version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
    document = iam.get_policy_version(PolicyArn=arn, VersionId=version)
    doc = document["PolicyVersion"]["Document"]
    return json.loads(doc) if isinstance(doc, str) else doc


def _matches(statement: dict[str, Any], action: str, resource: str) -> bool:
    actions = (
        statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
    )
    return action in actions and fnmatch.fnmatchcase(resource, statement["Resource"])


def _conditions_hold(statement: dict[str, Any], context: dict[str, str]) -> bool:
    """StringLike and Null, the two operators these policies use (checked here)."""
    ok = True
    for operator, tests in statement.get("Condition", {}).items():
        assert operator in ("StringLike", "Null"), operator
        for key, expected in tests.items():
            value = context.get(key)
            if operator == "Null":
                # "true": the key is absent from the request; "false": it is present.
                ok = ok and (value is None) == (expected == "true")
            else:
                ok = (
                    ok
                    and value is not None
                    and any(fnmatch.fnmatchcase(value, p) for p in expected)
                )
    return ok


def _allowed(policy: dict[str, Any], action: str, resource: str, context: dict[str, str]) -> bool:
    """Allow-only IAM evaluation for the features this policy uses (checked below)."""
    for statement in policy["Statement"]:
        assert set(statement) <= {"Sid", "Effect", "Action", "Resource", "Condition"}
        assert statement["Effect"] == "Allow"
        if _matches(statement, action, resource) and _conditions_hold(statement, context):
            return True
    return False


def _denied(statement: dict[str, Any], action: str, resource: str, context: dict[str, str]) -> bool:
    """Whether one Deny statement of a bucket policy refuses the request."""
    assert statement["Effect"] == "Deny" and statement["Principal"] == "*"
    return _matches(statement, action, resource) and _conditions_hold(statement, context)


def _user_client(policy_arn: str, name: str = "stage-runner") -> Any:
    """An S3 client of a new IAM user holding nothing but ``policy_arn``."""
    iam = boto3.client("iam", region_name="us-east-1")
    iam.create_user(UserName=name)
    iam.attach_user_policy(UserName=name, PolicyArn=policy_arn)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return boto3.client(
        "s3",
        region_name="us-east-1",
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
    )


def _record_puts(client: Any) -> list[dict[str, str | None]]:
    """The conditional headers of every PutObject ``client`` sends, as sent."""
    sent: list[dict[str, str | None]] = []

    def header(request: Any, name: str) -> str | None:
        value = request.headers.get(name)  # botocore keeps prepared headers as bytes
        return value.decode() if isinstance(value, bytes) else value

    def before_send(request: Any, **_: Any) -> None:
        sent.append(
            {
                "path": unquote(urlsplit(request.url).path),
                "if-none-match": header(request, "If-None-Match"),
                "if-match": header(request, "If-Match"),
            }
        )

    client.meta.events.register("before-send.s3.PutObject", before_send)
    return sent


def _bucket_policy_statement(sid: str) -> dict[str, Any]:
    """One statement of the template's bucket policy, with the stack's names filled in."""
    resource = load(INFRA / "state-bucket.yaml")["Resources"]["StateBucketPolicy"]
    (statement,) = [
        s for s in resource["Properties"]["PolicyDocument"]["Statement"] if s["Sid"] == sid
    ]
    return statement


@pytest.mark.usefixtures("aws")
def test_a_task_runs_on_the_deployed_bucket_with_only_the_runner_policy() -> None:
    out = _deploy(StatePrefix="checkpoints/v1")
    bucket, policy_arn = out["BucketName"], out["StageRunnerPolicyArn"]
    assert out["StoreUrl"] == f"s3://{bucket}/checkpoints/v1"
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="somebody-elses")
    s3.put_object(Bucket="somebody-elses", Key="secret", Body=b"x")
    encryption = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
    assert encryption["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    client = _user_client(policy_arn)
    puts = _record_puts(client)

    with enable_iam_authentication():
        store = ec.open_store(out["StoreUrl"], client=client)
        engine = TaskEngine("nightly-1", [_Step("extract"), _Step("load")], _State, store)
        summary = engine.run()
        assert summary.status is StageStatus.COMPLETE
        assert engine.status().done  # reading back (GET + LIST) is allowed too
        assert list(store.list_tasks()) == ["nightly-1"]
        run_puts = list(puts)  # the library's writes, not the probes below
        # Runners never delete: the policy does not let them.
        with pytest.raises(ClientError, match="AccessDenied"):
            client.delete_object(Bucket=bucket, Key="checkpoints/v1/nightly-1/load.json")
        with pytest.raises(ec.AccessDenied):
            store.delete_task("nightly-1")
        # Nothing outside <bucket>/<prefix>/:
        with pytest.raises(ClientError, match="AccessDenied"):
            client.put_object(Bucket=bucket, Key="elsewhere/x.json", Body=b"{}")
        with pytest.raises(ClientError, match="AccessDenied"):
            client.put_object(Bucket=bucket, Key="checkpoints/v1-sibling/x", Body=b"{}")
        with pytest.raises(ClientError, match="AccessDenied"):
            client.get_object(Bucket="somebody-elses", Key="secret")
        with pytest.raises(ClientError, match="AccessDenied"):
            client.list_objects_v2(Bucket="somebody-elses")
        with pytest.raises(ClientError, match="AccessDenied"):
            client.delete_bucket(Bucket=bucket)

    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
    # Everything the runner wrote is under the prefix; the task's objects are exactly
    # these (the store may keep objects of its own beside the tasks, e.g. a probe's).
    assert all(k.startswith("checkpoints/v1/") for k in keys), keys
    keys = [k for k in keys if k.startswith("checkpoints/v1/nightly-1/")]
    assert keys == [
        "checkpoints/v1/nightly-1/_lease.json",
        "checkpoints/v1/nightly-1/_task.json",
        "checkpoints/v1/nightly-1/extract.json",
        "checkpoints/v1/nightly-1/load.json",
    ]

    # The ListBucket statement only for keys under the prefix (moto skips this check).
    policy = _policy(policy_arn)
    arn = f"arn:aws:s3:::{bucket}"
    for prefix, expected in [
        ("checkpoints/v1/", True),
        ("checkpoints/v1/nightly-1/", True),
        ("", False),
        ("checkpoints/", False),
        ("other/", False),
        ("checkpoints/v1-sibling/", False),
    ]:
        assert _allowed(policy, "s3:ListBucket", arn, {"s3:prefix": prefix}) is expected, prefix
    assert not _allowed(policy, "s3:ListBucket", arn, {})
    # And exactly these actions, nothing else.
    actions = {
        a
        for s in policy["Statement"]
        for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
    }
    assert actions == {"s3:GetObject", "s3:PutObject", "s3:ListBucket", "s3:DeleteObject"}
    assert not _allowed(policy, "s3:DeleteObject", f"{arn}/checkpoints/v1/nightly-1/x.json", {})
    # ... deleting only the task index's markers (the run moved its marker twice).
    marker = f"{arn}/checkpoints/v1/_index/status/RUNNING/nightly-1"
    assert _allowed(policy, "s3:DeleteObject", marker, {})

    # Every write of the run was conditional, so the bucket policy's Deny of
    # unconditional PUTs (which moto cannot evaluate, see the module docstring) lets
    # each one through on AWS.
    deny = _bucket_policy_statement("DenyUnconditionalStateWrites")
    assert deny["Resource"] == {"Fn::Sub": "${StateBucket.Arn}/${StatePrefix}/*"}
    deny = {**deny, "Resource": f"{arn}/checkpoints/v1/*"}  # as the stack fills it in
    assert len(run_puts) >= 5  # manifest, lease taken and released, two stages, ...
    for put in run_puts:
        # Exactly one precondition: create (If-None-Match: *) or replace (If-Match).
        assert (put["if-none-match"] == "*") != (put["if-match"] is not None), put
        context = {f"s3:{h}": put[h] for h in ("if-none-match", "if-match") if put[h]}
        # Virtual-host-style URL: the path is the key.
        key = put["path"].removeprefix("/")
        # Under the store's prefix (the task's objects, and any the store writes for
        # itself), where the Deny applies: every one must pass it.
        assert key.startswith("checkpoints/v1/"), put
        assert not _denied(deny, "s3:PutObject", f"{arn}/{key}", context), put
    # And the same Deny refuses a PUT without either header, as the probe above sent.
    assert _denied(deny, "s3:PutObject", f"{arn}/checkpoints/v1/nightly-1/load.json", {})


@pytest.mark.usefixtures("aws")
def test_sse_kms_creates_a_key_and_grants_its_use_on_that_key_only() -> None:
    out = _deploy(Encryption="SSE-KMS", StatePrefix="eleanor")
    key_arn = out["KmsKeyArn"]
    s3 = boto3.client("s3", region_name="us-east-1")
    rule = s3.get_bucket_encryption(Bucket=out["BucketName"])["ServerSideEncryptionConfiguration"][
        "Rules"
    ][0]["ApplyServerSideEncryptionByDefault"]
    assert rule == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn}
    kms = boto3.client("kms", region_name="us-east-1")
    assert kms.get_key_rotation_status(KeyId=key_arn)["KeyRotationEnabled"] is True
    for output in ("StageRunnerPolicyArn", "StateOperatorPolicyArn"):
        policy = _policy(out[output])
        (kms_statement,) = [s for s in policy["Statement"] if s.get("Sid") == "StateKeyUse"]
        assert sorted(kms_statement["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
        assert kms_statement["Resource"] == key_arn
    # The task runs on the KMS-encrypted bucket.
    store = ec.open_store(out["StoreUrl"])
    summary = TaskEngine("kms-task", [_Step("only")], _State, store).run()
    assert summary.status is StageStatus.COMPLETE


@pytest.mark.usefixtures("aws")
def test_sse_kms_with_a_given_key_uses_it_and_creates_none() -> None:
    kms = boto3.client("kms", region_name="us-east-1")
    key_arn = kms.create_key(Description="mine")["KeyMetadata"]["Arn"]
    out = _deploy(Encryption="SSE-KMS", KmsKeyArn=key_arn)
    assert out["KmsKeyArn"] == key_arn
    assert len(kms.list_keys()["Keys"]) == 1
    for output in ("StageRunnerPolicyArn", "StateOperatorPolicyArn"):
        (kms_statement,) = [
            s for s in _policy(out[output])["Statement"] if s.get("Sid") == "StateKeyUse"
        ]
        assert kms_statement["Resource"] == key_arn


@pytest.mark.usefixtures("aws")
def test_sse_s3_grants_no_kms_at_all() -> None:
    out = _deploy()
    assert "KmsKeyArn" not in out
    runner = _policy(out["StageRunnerPolicyArn"])["Statement"]
    assert [s["Sid"] for s in runner] == ["StateObjects", "ListStatePrefix", "MoveIndexMarkers"]
    operator = _policy(out["StateOperatorPolicyArn"])["Statement"]
    assert [s["Sid"] for s in operator] == ["StateObjects", "ListStatePrefix"]
    assert out["StoreUrl"].endswith("/eleanor")


def _actions(policy: dict[str, Any]) -> set[str]:
    return {
        a
        for s in policy["Statement"]
        for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
    }


@pytest.mark.usefixtures("aws")
def test_runners_delete_only_index_markers_and_both_write_conditionally() -> None:
    out = _deploy(StatePrefix="ops")
    bucket = out["BucketName"]
    runner = _policy(out["StageRunnerPolicyArn"])
    operator = _policy(out["StateOperatorPolicyArn"])
    assert _actions(runner) == {
        "s3:GetObject",
        "s3:PutObject",
        "s3:ListBucket",
        "s3:DeleteObject",
    }
    marker = f"arn:aws:s3:::{bucket}/ops/_index/status/RUNNING/t"
    assert _allowed(runner, "s3:DeleteObject", marker, {})
    assert _actions(operator) == {
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:ListBucket",
    }
    # Both cover the prefix and nothing else.
    objects = f"arn:aws:s3:::{bucket}/ops/t/x.json"
    assert _allowed(operator, "s3:DeleteObject", objects, {})
    assert not _allowed(operator, "s3:DeleteObject", f"arn:aws:s3:::{bucket}/other/x", {})
    assert not _allowed(runner, "s3:DeleteObject", objects, {})

    runner_client = _user_client(out["StageRunnerPolicyArn"], "runner")
    operator_client = _user_client(out["StateOperatorPolicyArn"], "operator")
    with enable_iam_authentication():
        # A runner runs the task; an operator breaks its lease and deletes it.
        runs = ec.open_store(out["StoreUrl"], client=runner_client)
        assert TaskEngine("t", [_Step("only")], _State, runs).run().done
        lease = operator_client.get_object(Bucket=bucket, Key="ops/t/_lease.json")
        # lease --break is a compare-and-swap PUT, like every write the CLI makes.
        operator_client.put_object(
            Bucket=bucket,
            Key="ops/t/_lease.json",
            Body=lease["Body"].read(),
            IfMatch=lease["ETag"],
        )
        with pytest.raises(ec.AccessDenied):
            runs.delete_task("t")
        ops = ec.open_store(out["StoreUrl"], client=operator_client)
        # The manifest and the stage; the lease stays, so epochs outlive the deletion.
        assert ops.delete_task("t") == 2
        left = operator_client.list_objects_v2(Bucket=bucket, Prefix="ops/t/")["Contents"]
        assert [o["Key"] for o in left] == ["ops/t/_lease.json"]


def test_the_bucket_policy_refuses_unconditional_puts_under_the_prefix() -> None:
    deny = _bucket_policy_statement("DenyUnconditionalStateWrites")
    # Exactly AWS's documented keys (S3 user guide, "Enforce conditional writes on
    # Amazon S3 buckets"): both absent means neither If-None-Match nor If-Match was sent.
    assert deny["Action"] == "s3:PutObject"
    assert deny["Condition"] == {"Null": {"s3:if-none-match": "true", "s3:if-match": "true"}}
    assert deny["Resource"] == {"Fn::Sub": "${StateBucket.Arn}/${StatePrefix}/*"}
    deny = {**deny, "Resource": "arn:aws:s3:::b/eleanor/*"}
    key = "arn:aws:s3:::b/eleanor/t/s.json"
    assert _denied(deny, "s3:PutObject", key, {})
    assert not _denied(deny, "s3:PutObject", key, {"s3:if-none-match": "*"})
    assert not _denied(deny, "s3:PutObject", key, {"s3:if-match": '"etag"'})
    assert not _denied(deny, "s3:PutObject", "arn:aws:s3:::b/elsewhere/x", {})
    assert not _denied(deny, "s3:GetObject", key, {})
    assert not _denied(deny, "s3:DeleteObject", key, {})
