"""Fixtures: the saver on memory://, a local directory, fsspec (LocalFileSystem) and S3
(the moto HTTP server)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import eleanor_cloud as ec
from eleanor_cloud.backends.s3 import clear_probe_cache
from tests.s3.helpers import assume_conditions_honoured


@pytest.fixture
def s3_store(moto_server_url: str, s3_bucket: str, s3_client: Any) -> Iterator[ec.StateStore]:
    """A store on a fresh moto bucket, holding the verdict moto earns (no probe)."""
    clear_probe_cache()
    assume_conditions_honoured(moto_server_url, s3_bucket)
    yield ec.open_store(f"s3://{s3_bucket}/agents", client=s3_client)
    clear_probe_cache()


@pytest.fixture(params=["memory", "dir", "s3", "fsspec"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ec.StateStore:
    if request.param == "fsspec":  # fsspec's LocalFileSystem, through the fsspec backend
        return ec.open_store(f"fsspec+file://{tmp_path}/fs")
    if request.param == "s3":
        store: ec.StateStore = request.getfixturevalue("s3_store")
        return store
    if request.param == "memory":
        return ec.open_store("memory://")
    return ec.open_store(str(tmp_path / "store"))
