"""Fixtures of the container runner tests: the moto S3 store and the runner processes."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import eleanor_cloud as ec
from tests.aws.runner_support import ROOT
from tests.aws.taskmod import SIDE_ENV


@pytest.fixture
def env(moto_server_url: str, s3_bucket: str, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "AWS_ENDPOINT_URL_S3": moto_server_url,
        "ELEANOR_STORE": f"s3://{s3_bucket}/ecs",
        SIDE_ENV: str(tmp_path),
        "PYTHONPATH": str(ROOT),
    }


@pytest.fixture
def store(moto_server_url: str, s3_bucket: str) -> ec.StateStore:
    return ec.open_store(f"s3://{s3_bucket}/ecs", endpoint_url=moto_server_url)


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:  # never leave a runner behind, whatever failed
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture(params=["python-m", "cli"])
def entry(request: pytest.FixtureRequest) -> str:
    """Both ways a container runs a task: ``python -m eleanor_cloud.aws`` and the CLI."""
    return str(request.param)
