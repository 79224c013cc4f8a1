"""The shipped conformance suite against ObstoreBackend: obstore's S3Store on the moto
HTTP server, AzureStore on Azurite, LocalStore on a directory and MemoryStore (races
across threads, and across processes wherever the store is shared). fake-gcs-server
cannot take obstore's writes at all: see ``test_gcs.py``.

obstore has no conditional delete, so every class declares
``supports_conditional_delete = False`` and the suite asserts ``NotSupported``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import ClassVar

import pytest

from eleanor_cloud.backends.base import ObjectBackend
from eleanor_cloud.backends.obstore import ObstoreBackend
from eleanor_cloud.testing.conformance import BackendConformance, BackendFactory
from tests.obstore import helpers
from tests.support.emulators import AzuriteBlob


class _NoConditionalDelete:
    supports_conditional_delete: ClassVar[bool] = False


class TestObstoreS3MotoServer(_NoConditionalDelete, BackendConformance):
    """S3Store against moto's HTTP server: ETags, If-None-Match/If-Match, processes race."""

    # As the boto3 backend's class on this server: 8 workers x 25 increments (still
    # hundreds of lost CAS rounds per run) keep a shared 2-core machine fast enough.
    cas_increments = 25

    @pytest.fixture
    def backend(self, moto_server_url: str, s3_bucket: str) -> ObjectBackend:
        return helpers.s3_backend(moto_server_url, s3_bucket)

    @pytest.fixture
    def backend_factory(self, moto_server_url: str, s3_bucket: str) -> BackendFactory:
        return functools.partial(helpers.s3_backend, moto_server_url, s3_bucket)


class TestObstoreAzurite(_NoConditionalDelete, BackendConformance):
    """AzureStore against Azurite: blob ETags with If-None-Match/If-Match."""

    race_processes = 4
    cas_workers = 4
    cas_increments = 25

    @pytest.fixture
    def backend(self, azurite: AzuriteBlob, azure_container: str) -> ObjectBackend:
        return helpers.azure_backend(azurite.url, azure_container)

    @pytest.fixture
    def backend_factory(self, azurite: AzuriteBlob, azure_container: str) -> BackendFactory:
        return functools.partial(helpers.azure_backend, azurite.url, azure_container)


class TestObstoreLocalStore(_NoConditionalDelete, BackendConformance):
    """LocalStore on a directory: obstore's atomic create, our lock for compare-and-swap."""

    @pytest.fixture
    def backend(self, tmp_path: Path) -> ObjectBackend:
        return helpers.local_backend(str(tmp_path / "store"))

    @pytest.fixture
    def backend_factory(self, tmp_path: Path) -> BackendFactory:
        return functools.partial(helpers.local_backend, str(tmp_path / "store"))


class TestObstoreMemoryStore(_NoConditionalDelete, BackendConformance):
    """MemoryStore: one process's store, so only the thread races apply."""

    shared_across_processes = False

    @pytest.fixture
    def backend(self) -> ObjectBackend:
        from obstore.store import MemoryStore

        return ObstoreBackend(MemoryStore())
