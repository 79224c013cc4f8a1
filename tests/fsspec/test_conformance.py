"""The shipped conformance suite, races included, against the fsspec backend on each
filesystem whose conditional writes it performs: s3fs + moto's HTTP server, gcsfs +
fake-gcs-server, adlfs + Azurite, and fsspec's LocalFileSystem and MemoryFileSystem."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import ClassVar

import pytest

from eleanor_cloud.backends.base import ObjectBackend
from eleanor_cloud.backends.fsspec import FsspecBackend
from eleanor_cloud.testing.conformance import BackendConformance, BackendFactory
from tests.fsspec import helpers
from tests.support.emulators import AzuriteBlob

_GCS_DELETE_GAP = (
    "fake-gcs-server ignores ifGenerationMatch on DELETE (it enforces "
    "preconditions only on uploads); real GCS answers 412"
)


class _EmulatorSizes:
    """Race sizes for peers over HTTP on a 2-core CI box.

    Each spawned worker process pays ~1-2 s importing its cloud SDK, and a contended
    compare-and-swap increment costs several round trips per worker, so the races run 4
    processes and 4 workers x 25 increments (still every worker contending on one key)
    instead of 6 and 8 x 50; the thread create race keeps 8 threads.
    """

    race_processes: ClassVar[int] = 4
    cas_workers: ClassVar[int] = 4
    cas_increments: ClassVar[int] = 25


class TestS3fsMotoServer(_EmulatorSizes, BackendConformance):
    """s3fs against moto's HTTP server: ETags, If-None-Match/If-Match, processes race."""

    @pytest.fixture
    def backend(self, moto_server_url: str, s3_bucket: str) -> ObjectBackend:
        return helpers.s3fs_backend(moto_server_url, s3_bucket)

    @pytest.fixture
    def backend_factory(self, moto_server_url: str, s3_bucket: str) -> BackendFactory:
        return functools.partial(helpers.s3fs_backend, moto_server_url, s3_bucket)


class TestGcsfsFakeGcsServer(_EmulatorSizes, BackendConformance):
    """gcsfs against fake-gcs-server: generations and ifGenerationMatch."""

    emulator_gaps: ClassVar[dict[str, str]] = {
        "test_delete_if_version_mismatch_conflicts": _GCS_DELETE_GAP,
    }

    @pytest.fixture
    def backend(self, fake_gcs_url: str, gcs_bucket: str) -> ObjectBackend:
        return helpers.gcsfs_backend(fake_gcs_url, gcs_bucket)

    @pytest.fixture
    def backend_factory(self, fake_gcs_url: str, gcs_bucket: str) -> BackendFactory:
        return functools.partial(helpers.gcsfs_backend, fake_gcs_url, gcs_bucket)


class TestAdlfsAzurite(_EmulatorSizes, BackendConformance):
    """adlfs against Azurite: blob ETags with If-None-Match/If-Match."""

    @pytest.fixture
    def backend(self, azurite: AzuriteBlob, azure_container: str) -> ObjectBackend:
        return helpers.adlfs_backend(azurite.connection_string, azure_container)

    @pytest.fixture
    def backend_factory(self, azurite: AzuriteBlob, azure_container: str) -> BackendFactory:
        return functools.partial(helpers.adlfs_backend, azurite.connection_string, azure_container)


class TestFsspecLocalFileSystem(BackendConformance):
    """fsspec's LocalFileSystem, delegated to the atomic local-directory backend."""

    # The delegate is LocalBackend itself, whose process races run in
    # tests/store/test_conformance_builtin.py; here the thread races cover the wiring.
    test_create_race_processes_one_winner = None  # type: ignore[assignment]
    test_cas_race_processes_no_lost_update = None  # type: ignore[assignment]

    @pytest.fixture
    def backend(self, tmp_path: Path) -> ObjectBackend:
        return helpers.local_backend(str(tmp_path / "store"))

    @pytest.fixture
    def backend_factory(self, tmp_path: Path) -> BackendFactory:
        return functools.partial(helpers.local_backend, str(tmp_path / "store"))


class TestFsspecMemoryFileSystem(BackendConformance):
    """fsspec's MemoryFileSystem under one process-wide lock (not shared across processes,
    so the suite's process races do not apply; its thread races do)."""

    shared_across_processes = False

    @pytest.fixture
    def backend(self, memory_root: str) -> ObjectBackend:
        from fsspec.implementations.memory import MemoryFileSystem

        return FsspecBackend(MemoryFileSystem(), memory_root)
