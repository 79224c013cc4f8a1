"""Every S3 failure reaches the caller as one documented error with a one-line message
naming the bucket and key, raised ``from`` the boto3 exception (never a raw boto3
traceback), and bad configuration is refused before any request."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from eleanor_cloud.backends.base import CREATE, Version
from eleanor_cloud.backends.s3 import S3Backend
from eleanor_cloud.errors import (
    AccessDenied,
    BackendError,
    BucketNotFound,
    ConfigurationError,
    EleanorError,
    InvalidKey,
    Unavailable,
)
from eleanor_cloud.store.registry import open_store
from eleanor_cloud.store.state_store import StateStore
from eleanor_cloud.testing.conformance import CounterState
from tests.support.proxy import FaultProxy, Respond, matching


def _assert_one_clear_line(exc: EleanorError, *needles: str) -> None:
    message = str(exc)
    assert "\n" not in message
    assert "Traceback" not in message
    for needle in needles:
        assert needle in message, (needle, message)
    assert isinstance(exc.__cause__, ClientError | BotoCoreError)


# -- wrong bucket ----------------------------------------------------------------------


def test_missing_bucket_is_bucket_not_found_for_every_operation(moto_server_url: str) -> None:
    bucket = f"nope-{uuid.uuid4().hex[:12]}"
    backend = S3Backend(bucket, endpoint_url=moto_server_url)
    store = StateStore(backend, "runs")
    operations = {
        "load": lambda: store.load("job-1", "extract", CounterState),
        "create": lambda: store.create(CounterState(task_id="job-1", stage_name="extract")),
        "delete": lambda: backend.delete("runs/job-1/extract.json", Version('"abc"')),
        "list": lambda: list(store.list_tasks()),
    }
    for name, operation in operations.items():
        with pytest.raises(BucketNotFound) as info:
            operation()
        needles = [f"s3://{bucket}", "bucket does not exist"]
        if name != "list":
            needles.append("runs/job-1/extract.json")
        _assert_one_clear_line(info.value, *needles)


# -- credentials and permissions -------------------------------------------------------


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, s3_bucket: str) -> str:
    """Remove every credential source (after the bucket was made); yields the bucket."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SECURITY_TOKEN",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return s3_bucket


def test_missing_credentials_are_access_denied_before_any_request(
    proxy: FaultProxy, no_credentials: str
) -> None:
    s3_bucket = no_credentials
    store = open_store(f"s3://{s3_bucket}/runs", endpoint_url=proxy.url)
    with pytest.raises(AccessDenied) as info:
        store.load("job-1", "extract", CounterState)
    _assert_one_clear_line(
        info.value,
        f"s3://{s3_bucket}/runs/job-1/extract.json",
        "no usable AWS credentials",
        "AWS_ACCESS_KEY_ID",
    )
    assert isinstance(info.value, PermissionError)
    assert proxy.count() == 0  # botocore could not sign, so nothing was sent


@pytest.fixture
def iam_enforced() -> Iterator[tuple[str, Any]]:
    """moto in-process with IAM enforced; yields a bucket and a read-only user's session."""
    import boto3
    from moto import mock_aws
    from moto.core.authorization import enable_iam_authentication

    with mock_aws():
        bucket = f"iam-{uuid.uuid4().hex[:12]}"
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=bucket)
        iam = boto3.client("iam", region_name="us-east-1")
        iam.create_user(UserName="reader")
        iam.put_user_policy(
            UserName="reader",
            PolicyName="read-only",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": ["s3:GetObject", "s3:ListBucket"],
                            "Resource": "*",
                        }
                    ],
                }
            ),
        )
        key = iam.create_access_key(UserName="reader")["AccessKey"]
        session = boto3.Session(
            aws_access_key_id=key["AccessKeyId"],
            aws_secret_access_key=key["SecretAccessKey"],
            region_name="us-east-1",
        )
        with enable_iam_authentication():
            yield bucket, session


def test_iam_denied_write_names_the_missing_action(iam_enforced: tuple[str, Any]) -> None:
    bucket, session = iam_enforced
    store = open_store(f"s3://{bucket}/runs", session=session)
    with pytest.raises(AccessDenied) as info:
        store.create(CounterState(task_id="job-1", stage_name="extract"))
    _assert_one_clear_line(
        info.value,
        f"s3://{bucket}/runs/job-1/extract.json",
        "access denied for create",
        "s3:PutObject",
    )
    # What the policy allows still works with the same store.
    assert list(store.list_tasks()) == []


def test_unknown_access_key_is_access_denied(iam_enforced: tuple[str, Any]) -> None:
    import boto3

    bucket, _ = iam_enforced
    stranger = boto3.Session(
        aws_access_key_id="AKIAEXAMPLEEXAMPLE00",
        aws_secret_access_key="not-a-secret",
        region_name="us-east-1",
    )
    store = open_store(f"s3://{bucket}/runs", session=stranger)
    with pytest.raises(AccessDenied) as info:
        store.load("job-1", "extract", CounterState)
    _assert_one_clear_line(
        info.value,
        f"s3://{bucket}/runs/job-1/extract.json",
        "InvalidAccessKeyId",
        "invalid or expired",
    )


@pytest.mark.parametrize(
    "code", ["AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"]
)
def test_refusals_over_http_are_access_denied(proxy: FaultProxy, s3_bucket: str, code: str) -> None:
    store = open_store(f"s3://{s3_bucket}/runs", endpoint_url=proxy.url)
    proxy.rule = lambda _request: Respond(403, code, f"refused by the test: {code}\nline 2")
    with pytest.raises(AccessDenied) as info:
        store.create(CounterState(task_id="job-1", stage_name="extract"))
    _assert_one_clear_line(info.value, f"s3://{s3_bucket}/runs/job-1/extract.json", code, "line 2")
    assert proxy.count("PUT") == 1  # refusals are not retried


# -- server trouble --------------------------------------------------------------------


def test_persistent_5xx_is_unavailable_after_the_retries(proxy: FaultProxy, s3_bucket: str) -> None:
    backend = S3Backend(
        s3_bucket, endpoint_url=proxy.url, config=Config(retries={"total_max_attempts": 3})
    )
    proxy.rule = lambda _request: Respond(500, "InternalError", "We encountered an error.")
    with pytest.raises(Unavailable) as info:
        backend.read("runs/job-1/extract.json")
    _assert_one_clear_line(
        info.value, f"s3://{s3_bucket}/runs/job-1/extract.json", "InternalError", "after 3 attempts"
    )
    assert proxy.count("GET") == 3


def test_unexpected_client_error_is_a_backend_error(proxy: FaultProxy, s3_bucket: str) -> None:
    backend = S3Backend(s3_bucket, endpoint_url=proxy.url)
    proxy.inject(Respond(400, "InvalidArgument", "Weird argument"), when=matching("PUT"))
    with pytest.raises(BackendError) as info:
        backend.write("runs/a.json", b"x", CREATE)
    assert type(info.value) is BackendError
    _assert_one_clear_line(info.value, f"s3://{s3_bucket}/runs/a.json", "InvalidArgument")


# -- configuration, refused before any request -----------------------------------------


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("s3://", "names no bucket"),
        ("s3:///prefix", "names no bucket"),
        ("s3://Bad_Bucket!/p", "invalid S3 bucket name 'Bad_Bucket!'"),
        ("s3://ab/p", "invalid S3 bucket name 'ab'"),
        ("s3://bucket/p?versionId=1", "must not have a query"),
    ],
)
def test_bad_urls_are_configuration_errors(proxy: FaultProxy, url: str, needle: str) -> None:
    with pytest.raises(ConfigurationError, match=needle):
        open_store(url, endpoint_url=proxy.url)
    assert proxy.count() == 0


def test_bad_prefix_is_invalid_key(proxy: FaultProxy) -> None:
    with pytest.raises(InvalidKey, match="prefix"):
        open_store("s3://bucket-ok/a/../b", endpoint_url=proxy.url)
    assert proxy.count() == 0


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"extra_args": {"ACL": "public-read"}}, "unsupported S3 extra_args \\['ACL'\\]"),
        ({"extra_args": {"ServerSideEncryption": "rot13"}}, "must be one of"),
        ({"extra_args": {"SSEKMSKeyId": "alias/x"}}, "needs ServerSideEncryption"),
        ({"extra_args": {"ExpectedBucketOwner": "me"}}, "12-digit AWS account id"),
        ({"extra_args": ["ServerSideEncryption"]}, "must be a mapping"),
        ({"conflict_retries": -1}, "conflict_retries"),
        ({"page_size": 5000}, "page_size"),
        ({"client": object(), "endpoint_url": "http://127.0.0.1:9"}, "either client= or"),
        ({"no_such_option": 1}, "no_such_option"),
    ],
)
def test_bad_options_are_configuration_errors(options: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigurationError, match=needle) as info:
        open_store("s3://bucket-ok/runs", **options)
    assert "\n" not in str(info.value)


def test_bad_keys_are_refused_before_any_request(proxy: FaultProxy, s3_bucket: str) -> None:
    backend = S3Backend(s3_bucket, endpoint_url=proxy.url)
    for key in ("", "a//b", "../a", "a/./b", "x" * 1025, "a\x00b"):
        with pytest.raises(InvalidKey):
            backend.read(key)
        with pytest.raises(InvalidKey):
            backend.write(key, b"x", CREATE)
        with pytest.raises(InvalidKey):
            backend.delete(key)
    assert proxy.count() == 0


def test_access_denied_with_expected_owner_mentions_the_owner(
    proxy: FaultProxy, s3_bucket: str
) -> None:
    backend = S3Backend(
        s3_bucket, endpoint_url=proxy.url, extra_args={"ExpectedBucketOwner": "111122223333"}
    )
    proxy.rule = lambda _request: Respond(403, "AccessDenied", "Access Denied")
    with pytest.raises(AccessDenied) as info:
        backend.read("runs/a.json")
    _assert_one_clear_line(info.value, "s3:GetObject", "not owned by account 111122223333")


def test_session_must_be_a_boto3_session() -> None:
    import botocore.session

    with pytest.raises(ConfigurationError, match=r"boto3\.Session, got Session"):
        S3Backend("bucket-ok", session=botocore.session.get_session())  # type: ignore[arg-type]


def test_missing_boto3_is_a_missing_dependency_with_the_install_hint() -> None:
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import sys
        sys.modules["boto3"] = None  # as if the s3 extra were not installed
        import eleanor_cloud
        try:
            eleanor_cloud.open_store("s3://bucket-ok/p")
        except eleanor_cloud.MissingDependency as exc:
            print(exc.install, "|", exc)
    """)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    install, _, message = result.stdout.strip().partition(" | ")
    assert install == "eleanor-cloud[s3]"
    assert "pip install 'eleanor-cloud[s3]'" in message
    assert "\n" not in message
