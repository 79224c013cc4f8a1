"""The default client: botocore's, built without importing boto3, with one data loader
per process (the S3 model is parsed once, not once per store)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from eleanor_cloud.backends.s3 import S3Backend


def test_the_default_client_does_not_import_boto3() -> None:
    script = textwrap.dedent("""
        import sys
        import eleanor_cloud
        store = eleanor_cloud.open_store("s3://bucket-ok/p", region_name="us-east-1")
        print(store.backend.client.meta.service_model.service_name, "boto3" in sys.modules)
    """)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["s3", "False"]


def test_default_clients_share_one_loader_and_injected_sessions_keep_theirs() -> None:
    import boto3

    a = S3Backend("bucket-ok", region_name="us-east-1")
    b = S3Backend("bucket-ok", region_name="eu-west-1")
    assert a.client is not b.client
    assert a.client._loader is b.client._loader  # type: ignore[attr-defined]
    assert b.client.meta.region_name == "eu-west-1"
    # A boto3 session of the caller's builds a boto3 client (transfer helpers included).
    own = S3Backend("bucket-ok", session=boto3.Session(region_name="us-east-1"))
    assert hasattr(own.client, "upload_file")
