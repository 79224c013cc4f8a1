"""The state bucket's ShardWorkerPolicy, deployed into moto's CloudFormation: a worker
holding nothing but it runs every shard of a planned stage; it cannot plan, join, write
a stage state or the task's lease, or replace a manifest.

As in test_state_bucket_stack.py, moto enforces the Allow statements' actions and
resources but not their conditions, so the create-only condition on ``_task.json`` is
checked with a small evaluator, against the headers the run really sent.
"""

from __future__ import annotations

import fnmatch
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.core.authorization import enable_iam_authentication

import eleanor_cloud as ec
from eleanor_cloud.engine import BaseStage, Page, Shard, StageContext, TaskEngine
from eleanor_cloud.engine.fanout import list_done
from eleanor_cloud.models import StageStatus
from tests.infra.test_state_bucket_stack import (
    _deploy,
    _policy,
    _record_puts,
    _user_client,
    aws,  # noqa: F401 - the fixture
)


class _State(ec.BaseStageState[ec.SimpleRecordsResult]):
    pass


class _Fan(BaseStage[_State]):
    def plan(self, state: _State, ctx: StageContext[_State]) -> list[Shard]:
        return [Shard(f"s{i}", {"lo": 10 * i}) for i in range(3)]

    def run(self, state: _State, ctx: StageContext[_State]) -> None:
        lo = ctx.shard.spec["lo"]

        def read(cursor: Any, limit: int) -> Page:
            start = lo if cursor is None else int(cursor)
            end = min(start + limit, lo + 10)
            return Page(list(range(start, end)), cursor=end if end < lo + 10 else None, total=10)

        for batch in ctx.records(read, batch_size=4):
            for item in batch:
                batch.ok(item)


class _After(BaseStage[_State]):
    def run(self, state: _State, ctx: StageContext[_State]) -> None:
        return None


def _engine(store: ec.StateStore) -> TaskEngine[_State]:
    return TaskEngine("fan-1", [_Fan("fan"), _After("after")], _State, store)


def _allows(policy: dict[str, Any], action: str, resource: str, context: dict[str, str]) -> bool:
    """Allow-only evaluation of the operators this policy uses (checked here)."""
    for statement in policy["Statement"]:
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        resources = statement["Resource"]
        resources = resources if isinstance(resources, list) else [resources]
        if action not in actions or not any(fnmatch.fnmatchcase(resource, r) for r in resources):
            continue
        ok = True
        for operator, tests in statement.get("Condition", {}).items():
            assert operator in ("StringLike", "StringEquals"), operator
            for key, expected in tests.items():
                wanted = expected if isinstance(expected, list) else [expected]
                value = context.get(key)
                match = fnmatch.fnmatchcase if operator == "StringLike" else str.__eq__
                ok = ok and value is not None and any(match(value, w) for w in wanted)
        if ok:
            return True
    return False


@pytest.mark.usefixtures("aws")
def test_a_worker_with_only_the_shard_policy_runs_the_shards_and_nothing_else() -> None:
    out = _deploy(StatePrefix="eleanor")
    bucket = out["BucketName"]
    runner = _user_client(out["StageRunnerPolicyArn"], "planner")
    worker = _user_client(out["ShardWorkerPolicyArn"], "shard-worker")
    puts = _record_puts(worker)

    with enable_iam_authentication():
        plans = ec.open_store(out["StoreUrl"], client=runner)
        assert not _engine(plans).run().done  # planned, under the task's lease
        shards = ec.open_store(out["StoreUrl"], client=worker)
        for shard in ("s0", "s1", "s2"):
            summary = _engine(shards).run_shard("fan", shard)
            assert summary.done and summary.status is StageStatus.COMPLETE
        assert sorted(list_done(shards, "fan-1", "fan")) == ["s0", "s1", "s2"]
        worker_puts = list(puts)
        # The task's own objects are out of reach: a worker cannot plan, join or lease.
        for key in ("fan-1/fan.json", "fan-1/_lease.json", "fan-1/fan/plan.json"):
            with pytest.raises(ClientError, match="AccessDenied"):
                worker.put_object(Bucket=bucket, Key=f"eleanor/{key}", Body=b"{}", IfMatch='"x"')
        with pytest.raises(ec.AccessDenied):
            _engine(shards).run()  # the join writes the stage state: refused
        with pytest.raises(ClientError, match="AccessDenied"):
            worker.delete_object(Bucket=bucket, Key="eleanor/fan-1/fan/done/s0.json")
        summary = _engine(plans).run()  # the planner's role joins
        assert summary.status is StageStatus.COMPLETE

    # Every PUT the shard runs sent, judged by the policy with its conditions: the
    # manifest only as a create (bind tries that first; it exists, so S3 answers 412).
    policy = _policy(out["ShardWorkerPolicyArn"])
    arn = f"arn:aws:s3:::{bucket}"
    kinds = set()
    for put in worker_puts:
        key = put["path"].removeprefix("/")
        context = {f"s3:{h}": put[h] for h in ("if-none-match", "if-match") if put[h]}
        assert _allows(policy, "s3:PutObject", f"{arn}/{key}", context), put
        kinds.add(key.split("/")[3] if key.count("/") >= 4 else key.rsplit("/", 1)[-1])
    assert kinds == {"_task.json", "shards", "done"}, kinds
    manifest = f"{arn}/eleanor/fan-1/_task.json"
    assert _allows(policy, "s3:PutObject", manifest, {"s3:if-none-match": "*"})
    assert not _allows(policy, "s3:PutObject", manifest, {"s3:if-match": '"etag"'})
    assert not _allows(policy, "s3:PutObject", manifest, {})
    for key in ("fan-1/fan.json", "fan-1/_lease.json", "fan-1/fan/plan.json", "other/x"):
        assert not _allows(policy, "s3:PutObject", f"{arn}/eleanor/{key}", {"s3:if-match": "x"})
    assert _allows(policy, "s3:GetObject", f"{arn}/eleanor/fan-1/fan.json", {})
    assert not _allows(policy, "s3:GetObject", f"{arn}/elsewhere/x", {})
    assert not _allows(policy, "s3:ListBucket", arn, {"s3:prefix": "other/"})
    assert _allows(policy, "s3:ListBucket", arn, {"s3:prefix": "eleanor/fan-1/"})
    actions = {
        a
        for s in policy["Statement"]
        for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
    }
    assert actions == {"s3:GetObject", "s3:PutObject", "s3:ListBucket"}


@pytest.mark.usefixtures("aws")
def test_with_sse_kms_the_shard_policy_uses_that_key_only() -> None:
    kms = boto3.client("kms", region_name="us-east-1")
    key_arn = kms.create_key(Description="mine")["KeyMetadata"]["Arn"]
    out = _deploy(Encryption="SSE-KMS", KmsKeyArn=key_arn)
    (statement,) = [
        s for s in _policy(out["ShardWorkerPolicyArn"])["Statement"] if s["Sid"] == "StateKeyUse"
    ]
    assert statement["Resource"] == key_arn
    assert sorted(statement["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
