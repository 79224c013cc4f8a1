"""Deploy infra/state-bucket.yaml into moto's CloudFormation and run a task on it.

The task runs as an IAM user that holds nothing but the stack's runner policy, with
moto's IAM enforcement on: the run completing proves the policy is sufficient; the
refusals prove it is narrow. moto does not evaluate the ``s3:prefix`` condition (it
ignores StringLike), so that statement is also checked with a small evaluator below.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.core.authorization import enable_iam_authentication

import eleanor_cloud as ec
from eleanor_cloud.engine import BaseStage, StageContext, TaskEngine
from eleanor_cloud.models import StageStatus
from tests.infra.templates import INFRA

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


def _allowed(policy: dict[str, Any], action: str, resource: str, context: dict[str, str]) -> bool:
    """Allow-only IAM evaluation for the features this policy uses (checked below)."""
    for statement in policy["Statement"]:
        assert set(statement) <= {"Sid", "Effect", "Action", "Resource", "Condition"}
        assert statement["Effect"] == "Allow"
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        if action not in actions:
            continue
        if not fnmatch.fnmatchcase(resource, statement["Resource"]):
            continue
        ok = True
        for operator, tests in statement.get("Condition", {}).items():
            assert operator == "StringLike"
            for key, patterns in tests.items():
                value = context.get(key)
                ok = (
                    ok
                    and value is not None
                    and any(fnmatch.fnmatchcase(value, p) for p in patterns)
                )
        if ok:
            return True
    return False


def _runner_client(policy_arn: str) -> Any:
    iam = boto3.client("iam", region_name="us-east-1")
    iam.create_user(UserName="stage-runner")
    iam.attach_user_policy(UserName="stage-runner", PolicyArn=policy_arn)
    key = iam.create_access_key(UserName="stage-runner")["AccessKey"]
    return boto3.client(
        "s3",
        region_name="us-east-1",
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
    )


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
    client = _runner_client(policy_arn)

    with enable_iam_authentication():
        store = ec.open_store(out["StoreUrl"], client=client)
        engine = TaskEngine("nightly-1", [_Step("extract"), _Step("load")], _State, store)
        summary = engine.run()
        assert summary.status is StageStatus.COMPLETE
        assert engine.status().done  # reading back (GET + LIST) is allowed too
        assert list(store.list_tasks()) == ["nightly-1"]
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
    assert actions == {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"}


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
    policy = _policy(out["StageRunnerPolicyArn"])
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
    (kms_statement,) = [
        s
        for s in _policy(out["StageRunnerPolicyArn"])["Statement"]
        if s.get("Sid") == "StateKeyUse"
    ]
    assert kms_statement["Resource"] == key_arn


@pytest.mark.usefixtures("aws")
def test_sse_s3_grants_no_kms_at_all() -> None:
    out = _deploy()
    assert "KmsKeyArn" not in out
    statements = _policy(out["StageRunnerPolicyArn"])["Statement"]
    assert [s["Sid"] for s in statements] == ["StateObjects", "ListStatePrefix"]
    assert out["StoreUrl"].endswith("/eleanor")
