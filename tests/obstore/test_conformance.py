"""The shipped conformance suite against ObstoreBackend: obstore's S3Store on the moto
HTTP server, AzureStore on Azurite, GCSStore on fake-gcs-server (through the upload
shim, and directly with the emulator's gap marked), LocalStore on a directory and
MemoryStore (races across threads, and across processes wherever the store is shared).

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


# The tests fake-gcs-server passes without a single obstore write: bad input refused
# before any request, a missing key, the protocol's shape.
_NO_WRITE = {
    "test_bad_keys_rejected_before_io",
    "test_unserializable_or_invalid_state_rejected_before_io",
    "test_failed_write_is_reported_and_leaves_nothing",
    "test_write_modes_are_a_closed_type",
    "test_protocol_shape",
    "test_read_missing_raises_not_found",
}
_GCS_XML_GAP = (
    "fake-gcs-server takes no XML API PUT (obstore's GCS upload): 400 'invalid uploadType'; "
    "real GCS does. TestObstoreGcsFakeGcsServer runs the suite through the upload shim"
)


class TestObstoreGcsFakeGcsServer(_NoConditionalDelete, BackendConformance):
    """GCSStore on fake-gcs-server through ``GcsXmlShim``: obstore's XML upload becomes
    the JSON multipart upload on which fake-gcs-server checks ifGenerationMatch; reads,
    listings and deletes go to the emulator untouched. Generations are the versions."""

    race_processes = 4
    cas_workers = 4
    cas_increments = 25

    @pytest.fixture
    def backend(self, gcs_shim_url: str, gcs_bucket: str) -> ObjectBackend:
        return helpers.gcs_backend(gcs_shim_url, gcs_bucket)

    @pytest.fixture
    def backend_factory(self, gcs_shim_url: str, gcs_bucket: str) -> BackendFactory:
        return functools.partial(helpers.gcs_backend, gcs_shim_url, gcs_bucket)


class TestObstoreGcsFakeGcsServerDirect(_NoConditionalDelete, BackendConformance):
    """GCSStore on fake-gcs-server with nothing in between: every write is the emulator's
    gap (strict xfail, so the day it takes obstore's uploads this class says so)."""

    emulator_gaps: ClassVar[dict[str, str]] = {
        name: _GCS_XML_GAP
        for name in dir(BackendConformance)
        if name.startswith("test_") and name not in _NO_WRITE
    }

    @pytest.fixture
    def backend(self, fake_gcs_url: str, gcs_bucket: str) -> ObjectBackend:
        return helpers.gcs_backend(fake_gcs_url, gcs_bucket)

    @pytest.fixture
    def backend_factory(self, fake_gcs_url: str, gcs_bucket: str) -> BackendFactory:
        return functools.partial(helpers.gcs_backend, fake_gcs_url, gcs_bucket)


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
