"""``eleanor-cloud check``: conditional writes honoured, and the credentials' permissions.

S3 is moto's HTTP server (through the fault proxy, whose ``strip_conditions`` rule plays
a store that ignores If-None-Match/If-Match) and moto in-process with IAM enforced (a
runner's policy: Get/Put/List, no Delete). Every ``--json`` document printed in-process
is validated against the published schema by the conftest.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import eleanor_cloud as ec
from eleanor_cloud.cli.checking import PROBE_NAME
from tests.cli.conftest import BIN
from tests.support.proxy import FaultProxy, strip_conditions


@pytest.fixture(autouse=True)
def _fresh_probe_cache() -> Iterator[None]:
    from eleanor_cloud.backends.s3 import clear_probe_cache

    clear_probe_cache()
    yield
    clear_probe_cache()


@pytest.fixture
def proxy(moto_server_url: str) -> Iterator[FaultProxy]:
    with FaultProxy(moto_server_url) as running:
        yield running


def _doc(result: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def _outcomes(doc: dict[str, Any]) -> dict[str, str]:
    return {row["name"]: row["outcome"] for row in doc["checks"]}


ALL_PASS = {
    "put": "pass",
    "conditional_create": "pass",
    "conditional_replace": "pass",
    "get": "pass",
    "list": "pass",
    "delete": "info",
}


def test_the_probe_name_is_the_s3_backends() -> None:
    from eleanor_cloud.backends.s3 import PROBE_NAME as S3_PROBE_NAME

    assert PROBE_NAME == S3_PROBE_NAME


def test_a_local_store_passes_and_keeps_no_task(invoke, store_dir: Path) -> None:  # type: ignore[no-untyped-def]
    plain = invoke("check")
    assert plain.exit_code == 0, plain.output
    lines = plain.stdout.splitlines()
    description = ec.open_store(str(store_dir)).backend.description
    assert lines[0] == f"store {description} (probe object {PROBE_NAME})"
    assert lines[-1].startswith("ok: conditional writes are honoured")
    names = ["put", "conditional", "conditional", "get", "list", "delete"]
    assert [line.split()[0] for line in lines[2:-1]] == names
    doc = _doc(invoke("check", "--json"))  # a second run finds the probe object: fine
    assert doc["ok"] is True and doc["backend"] == "LocalBackend" and doc["endpoint"] is None
    assert _outcomes(doc) == ALL_PASS
    assert (doc["conditional_create"], doc["conditional_replace"]) == (True, True)
    assert doc["permissions"] == {"get": True, "put": True, "list": True, "delete": True}
    assert doc["probe_key"] == PROBE_NAME
    assert (store_dir / PROBE_NAME).is_file()  # nothing was deleted
    assert _doc(invoke("tasks", "--json"))["tasks"] == []  # and it is not a task


def test_memory_and_fsspec_memory_stores_pass(invoke) -> None:  # type: ignore[no-untyped-def]
    for url in ("memory://", "fsspec+memory://check-store"):
        result = invoke("check", "--store", url, "--json")
        assert result.exit_code == 0, result.output
        assert _outcomes(_doc(result)) == ALL_PASS


def test_an_fsspec_filesystem_without_conditional_writes_fails_at_open(invoke) -> None:  # type: ignore[no-untyped-def]
    result = invoke("check", "--store", "fsspec+data://", "--json")
    assert result.exit_code == 1
    doc = _doc(result)
    assert doc["ok"] is False and doc["probe_key"] is None
    assert [(r["name"], r["outcome"]) for r in doc["checks"]] == [("open", "fail")]
    assert "DataFileSystem" in doc["checks"][0]["detail"]
    assert doc["permissions"] == {"get": None, "put": None, "list": None, "delete": None}
    plain = invoke("check", "--store", "fsspec+data://")
    assert plain.exit_code == 1
    assert plain.stdout.splitlines()[-1] == "FAILED: see the checks above"


def test_usage_errors_exit_2(invoke) -> None:  # type: ignore[no-untyped-def]
    assert invoke("check", "--store", "bogus://x").exit_code == 2
    assert invoke("check", "--no-such-option").exit_code == 2


def test_s3_that_honours_conditions_passes(
    invoke,  # type: ignore[no-untyped-def]
    proxy: FaultProxy,
    s3_bucket: str,
    s3_client: Any,
) -> None:
    env = {"AWS_ENDPOINT_URL_S3": proxy.url}
    result = invoke("check", "--store", f"s3://{s3_bucket}/runs", "--json", env=env)
    assert result.exit_code == 0, result.output
    doc = _doc(result)
    assert _outcomes(doc) == ALL_PASS
    assert (doc["backend"], doc["endpoint"]) == ("S3Backend", proxy.url)
    assert doc["store"] == f"s3://{s3_bucket}"
    assert doc["probe_key"] == f"runs/{PROBE_NAME}"
    assert doc["permissions"]["delete"] is True  # moto without IAM: anything goes
    # Three conditional PUTs (the probe), a GET, a LIST, a conditional DELETE refused:
    # every write carried a condition, and nothing was deleted.
    sent = [(e.request.method, e.status) for e in proxy.log]
    probe = [("PUT", 200), ("PUT", 412), ("PUT", 412)]
    assert sent == [*probe, ("GET", 200), ("GET", 200), ("DELETE", 412)]
    for entry in proxy.requests("PUT") + proxy.requests("DELETE"):
        conditions = (entry.request.header("If-None-Match"), entry.request.header("If-Match"))
        assert conditions != (None, None)
    listed = s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"]
    assert [o["Key"] for o in listed] == [f"runs/{PROBE_NAME}"]


def test_s3_that_ignores_conditions_fails(invoke, proxy: FaultProxy, s3_bucket: str) -> None:  # type: ignore[no-untyped-def]
    proxy.rule = strip_conditions
    env = {"AWS_ENDPOINT_URL_S3": proxy.url}
    result = invoke("check", "--store", f"s3://{s3_bucket}/runs", "--json", env=env)
    assert result.exit_code == 1
    doc = _doc(result)
    assert doc["ok"] is False
    assert (doc["conditional_create"], doc["conditional_replace"]) == (False, False)
    outcomes = _outcomes(doc)
    assert outcomes["conditional_create"] == outcomes["conditional_replace"] == "fail"
    assert outcomes["put"] == outcomes["get"] == outcomes["list"] == "pass"
    rows = {row["name"]: row["detail"] for row in doc["checks"]}
    assert "If-None-Match: * on an existing object was ACCEPTED" in rows["conditional_create"]
    plain = invoke("check", "--store", f"s3://{s3_bucket}/runs", env=env)
    assert plain.exit_code == 1
    assert "ACCEPTED" in plain.stdout and plain.stdout.splitlines()[-1].startswith("FAILED")


@pytest.fixture
def iam_users() -> Iterator[tuple[str, dict[str, dict[str, Any]]]]:
    """moto in-process with IAM enforced: a bucket, and env credentials for a runner
    (Get/Put/List), an operator (and Delete) and a reader (Get/List)."""
    import boto3
    from moto import mock_aws
    from moto.core.authorization import enable_iam_authentication

    policies = {
        "runner": ["s3:GetObject", "s3:PutObject", "s3:ListBucket"],
        "operator": ["s3:GetObject", "s3:PutObject", "s3:ListBucket", "s3:DeleteObject"],
        "reader": ["s3:GetObject", "s3:ListBucket"],
    }
    with mock_aws():
        bucket = f"check-{uuid.uuid4().hex[:12]}"
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=bucket)
        iam = boto3.client("iam", region_name="us-east-1")
        envs: dict[str, dict[str, Any]] = {}
        for user, actions in policies.items():
            iam.create_user(UserName=user)
            statement = {"Effect": "Allow", "Action": actions, "Resource": "*"}
            iam.put_user_policy(
                UserName=user,
                PolicyName=user,
                PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [statement]}),
            )
            key = iam.create_access_key(UserName=user)["AccessKey"]
            envs[user] = {
                "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
                "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
                "AWS_SESSION_TOKEN": None,
                "AWS_SECURITY_TOKEN": None,
            }
        with enable_iam_authentication():
            yield bucket, envs


def test_s3_permissions_of_a_runner_an_operator_and_a_reader(
    invoke,  # type: ignore[no-untyped-def]
    iam_users: tuple[str, dict[str, dict[str, Any]]],
) -> None:
    bucket, envs = iam_users
    url = f"s3://{bucket}/runs"
    runner = invoke("check", "--store", url, "--json", env=envs["runner"])
    assert runner.exit_code == 0, runner.output
    doc = _doc(runner)
    assert doc["permissions"] == {"get": True, "put": True, "list": True, "delete": False}
    delete = next(row for row in doc["checks"] if row["name"] == "delete")
    assert delete["outcome"] == "info"  # as a runner's should be: not a failure
    assert "s3:DeleteObject not allowed, as a runner's should be" in delete["detail"]

    operator = _doc(invoke("check", "--store", url, "--json", env=envs["operator"]))
    assert operator["ok"] is True and operator["permissions"]["delete"] is True

    reader = invoke("check", "--store", url, "--json", env=envs["reader"])
    assert reader.exit_code == 1
    doc = _doc(reader)
    assert doc["permissions"] == {"get": True, "put": False, "list": True, "delete": False}
    outcomes = _outcomes(doc)
    assert outcomes["put"] == "fail"
    assert outcomes["conditional_create"] == outcomes["conditional_replace"] == "skipped"
    assert (doc["conditional_create"], doc["conditional_replace"]) == (None, None)


def test_check_from_a_real_process_on_s3(moto_server_url: str, s3_bucket: str) -> None:
    env = dict(os.environ, AWS_ENDPOINT_URL_S3=moto_server_url, NO_COLOR="1")
    env.pop("ELEANOR_STORE", None)
    out = subprocess.run(
        [str(BIN / "eleanor-cloud"), "check", "--store", f"s3://{s3_bucket}/runs"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == (
        f"store s3://{s3_bucket} at {moto_server_url} (probe object runs/{PROBE_NAME})"
    )
    assert "conditional create   pass" in out.stdout
