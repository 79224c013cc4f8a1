"""``status``/``tasks`` against S3: the real console script in a subprocess, talking HTTP
to the moto server through ``AWS_ENDPOINT_URL_S3`` (as a user would point it at S3)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

import eleanor_cloud as ec
from eleanor_cloud.models import StageStatus as S
from tests.cli.conftest import BIN, seed_task


def _cli(args: list[str], endpoint: str, **env_extra: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("ELEANOR_STORE", None)
    env.update(AWS_ENDPOINT_URL_S3=endpoint, NO_COLOR="1", **env_extra)
    return subprocess.run(
        [str(BIN / "eleanor-cloud"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.fixture
def s3_store(moto_server_url: str, s3_bucket: str, s3_client: Any) -> ec.StateStore:
    return ec.open_store(f"s3://{s3_bucket}/checkpoints", client=s3_client)


def test_tasks_and_status_on_s3(
    s3_store: ec.StateStore, s3_bucket: str, moto_server_url: str
) -> None:
    seed_task(s3_store, "s3-done", [("extract", S.COMPLETE, 1), ("load", S.COMPLETE, 2)])
    seed_task(s3_store, "s3-failed", [("extract", S.COMPLETE, 1), ("load", S.ERROR, 3)])
    url = f"s3://{s3_bucket}/checkpoints"

    listed = _cli(["--store", url, "tasks", "--json"], moto_server_url)
    assert listed.returncode == 0, listed.stderr
    doc = json.loads(listed.stdout)
    assert doc["store"].startswith(f"s3://{s3_bucket}")
    assert [(t["task_id"], t["status"]) for t in doc["tasks"]] == [
        ("s3-done", "COMPLETE"),
        ("s3-failed", "ERROR"),
    ]

    page = json.loads(
        _cli(["--store", url, "tasks", "--limit", "1", "--json"], moto_server_url).stdout
    )
    assert [t["task_id"] for t in page["tasks"]] == ["s3-done"]
    assert page["next_after"] == "s3-done"

    status = _cli(["--store", url, "status", "s3-done", "--json"], moto_server_url)
    assert status.returncode == 0, status.stderr
    task = json.loads(status.stdout)
    assert task["status"] == "COMPLETE"
    assert [(s["name"], s["attempts"]) for s in task["stages"]] == [("extract", 1), ("load", 2)]

    table = _cli(["status", "s3-failed"], moto_server_url, ELEANOR_STORE=url)
    assert table.returncode == 1  # the task is in ERROR
    assert table.stdout.startswith("task s3-failed: ERROR  (failed stage: load")


def test_missing_bucket_is_one_line(moto_server_url: str) -> None:
    result = _cli(["--store", "s3://no-such-bucket-here", "tasks"], moto_server_url)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert "no-such-bucket-here" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_task_on_s3(s3_bucket: str, moto_server_url: str) -> None:
    result = _cli(["--store", f"s3://{s3_bucket}", "status", "ghost"], moto_server_url)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "'ghost'" in result.stderr and s3_bucket in result.stderr


def test_python_dash_m_entry_point_matches_console_script(
    s3_bucket: str, moto_server_url: str
) -> None:
    env = dict(os.environ, AWS_ENDPOINT_URL_S3=moto_server_url)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "eleanor_cloud.cli",
            "--store",
            f"s3://{s3_bucket}",
            "tasks",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["tasks"] == []


def test_demo_runs_on_s3_and_lists(s3_bucket: str, moto_server_url: str) -> None:
    url = f"s3://{s3_bucket}/runs"
    demo = _cli(
        ["--store", url, "demo", "--work-delay", "0", "--records", "60", "--json"], moto_server_url
    )
    assert demo.returncode == 0, demo.stderr
    doc = json.loads(demo.stdout)
    assert doc["status"] == "COMPLETE" and doc["store"].startswith(f"s3://{s3_bucket}")
    assert doc["result"]["total_count"] == 60
    listed = json.loads(_cli(["--store", url, "tasks", "--json"], moto_server_url).stdout)
    assert [(t["task_id"], t["status"]) for t in listed["tasks"]] == [("demo", "COMPLETE")]


def test_missing_credentials_is_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_SHARED_CREDENTIALS_FILE="/nonexistent",
        AWS_CONFIG_FILE="/nonexistent",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL_S3="http://127.0.0.1:9",
    )
    result = subprocess.run(
        [str(BIN / "eleanor-cloud"), "--store", "s3://some-bucket", "tasks"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert "credentials" in result.stderr and "s3://some-bucket" in result.stderr
