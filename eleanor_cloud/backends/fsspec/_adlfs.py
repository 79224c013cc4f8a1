"""Conditional writes on adlfs (``az://container/prefix``, ``abfs://``, ``abfss://``).

- create: ``pipe_file(mode="create")``: an upload with ``If-None-Match: *``; the 409
  (adlfs: ``FileExistsError``) -> ``AlreadyExists``.
- compare-and-swap: ``pipe_file(etag=..., match_condition=IfNotModified)``, which adlfs
  passes to ``upload_blob`` as ``If-Match``; ``ResourceModifiedError`` (412) ->
  ``Conflict``, as is a missing blob.
- conditional delete: ``BlobClient.delete_blob(etag=..., match_condition=IfNotModified)``
  through adlfs's own SDK client (adlfs's ``rm_file`` takes no conditions).
- read: one ``download_blob``: the body and the ETag of the same response (the SDK pins
  any further chunk to that ETag).
- version: the blob's ETag.
"""

from __future__ import annotations

from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from fsspec.asyn import sync

from eleanor_cloud.backends.base import Create, Overwrite, Replace, Version, WriteMode
from eleanor_cloud.backends.fsspec._bucket import BucketBackend
from eleanor_cloud.errors import (
    AccessDenied,
    AlreadyExists,
    BackendError,
    BucketNotFound,
    Conflict,
    EleanorError,
    NotFound,
    Unavailable,
)

__all__ = ["AdlfsBackend"]

_ERRORS = (OSError, AzureError)


def _error_code(exc: BaseException) -> str:
    return str(getattr(exc, "error_code", "") or "")


def _status(exc: BaseException) -> int:
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else 0


async def _download(fs: Any, container: str, name: str) -> tuple[bytes, str]:
    async with fs.service_client.get_blob_client(container=container, blob=name) as blob:
        stream = await blob.download_blob()
        data = await stream.readall()
        return bytes(data), str(stream.properties.etag)


async def _delete(fs: Any, container: str, name: str, etag: str | None) -> None:
    conditions: dict[str, Any] = {}
    if etag is not None:
        conditions = {"etag": etag, "match_condition": MatchConditions.IfNotModified}
    async with fs.service_client.get_blob_client(container=container, blob=name) as blob:
        await blob.delete_blob(**conditions)


async def _exists(fs: Any, container: str, name: str) -> bool:
    async with fs.service_client.get_blob_client(container=container, blob=name) as blob:
        return bool(await blob.exists())


async def _list_names(fs: Any, container: str, prefix: str) -> list[str]:
    async with fs.service_client.get_container_client(container) as client:
        names: list[str] = []
        # 1000 per page, like S3 and GCS (Azure's default is 5000).
        async for blob in client.list_blobs(
            name_starts_with=prefix or None, include=["metadata"], results_per_page=1000
        ):
            # adlfs marks the directories it creates with a metadata flag: not objects.
            if (blob.metadata or {}).get("is_directory") == "true":
                continue
            names.append(str(blob.name))
        return names


class AdlfsBackend(BucketBackend):
    """adlfs: Azure Blob ``If-None-Match``/``If-Match`` preconditions, ETags as versions."""

    _scheme = "az"
    _errors = _ERRORS
    _lister = staticmethod(_list_names)

    @property
    def _where(self) -> str:
        account = getattr(self._fs, "account_name", None)
        return f"{self._bucket}@{account}" if account else self._bucket

    def _error(self, exc: BaseException, key: str, operation: str) -> EleanorError:
        where = f"{self.description}: {operation} of {key!r}"
        code, status = _error_code(exc), _status(exc)
        if code == "ContainerNotFound":
            return BucketNotFound(
                f"{where}: container {self._bucket!r} does not exist", key=key, operation=operation
            )
        if isinstance(exc, (ResourceNotFoundError, FileNotFoundError)):
            return NotFound(
                f"{self.description}: no object at {key!r}", key=key, operation=operation
            )
        if isinstance(exc, (ClientAuthenticationError, PermissionError)) or status in (401, 403):
            return AccessDenied(f"{where}: access denied: {exc}", key=key, operation=operation)
        if (
            isinstance(
                exc, (ServiceRequestError, ServiceResponseError, TimeoutError, ConnectionError)
            )
            or status >= 500
            or status == 429
        ):
            return Unavailable(
                f"{where}: Azure Blob unavailable: {exc}", key=key, operation=operation
            )
        if isinstance(exc, HttpResponseError):
            return BackendError(
                f"{where} failed ({status} {code}): {exc.message}", key=key, operation=operation
            )
        return BackendError(f"{where} failed: {exc}", key=key, operation=operation)

    # -- protocol ----------------------------------------------------------------------

    def read(self, key: str) -> tuple[bytes, Version]:
        data, etag = self._run(key, "read", _download, self._name(key))
        return data, Version(etag)

    def _upload(self, key: str, data: bytes, operation: str, **options: Any) -> Version:
        path = f"{self._bucket}/{self._name(key)}"
        try:
            result = self._fs.pipe_file(path, data, **options)
        except (FileExistsError, ResourceExistsError) as exc:
            if operation != "create":  # pragma: no cover - only create sends If-None-Match
                raise self._error(exc, key, operation) from exc
            raise AlreadyExists(
                f"{self.description}: {key!r} already exists", key=key, operation=operation
            ) from exc
        except ResourceModifiedError as exc:
            if operation == "create":
                raise AlreadyExists(
                    f"{self.description}: {key!r} already exists", key=key, operation=operation
                ) from exc
            raise Conflict(
                f"{self.description}: {key!r} is not at the expected version",
                key=key,
                operation=operation,
            ) from exc
        except ResourceNotFoundError as exc:
            if operation == "replace" and _error_code(exc) != "ContainerNotFound":
                raise Conflict(
                    f"{self.description}: {key!r} does not exist", key=key, operation=operation
                ) from exc
            raise self._error(exc, key, operation) from exc
        except _ERRORS as exc:
            raise self._error(exc, key, operation) from exc
        return Version(str(result["etag"]))

    def write(self, key: str, data: bytes, mode: WriteMode) -> Version:
        match mode:
            case Create():
                return self._upload(key, data, "create", mode="create")
            case Replace(version=expected):
                return self._upload(
                    key,
                    data,
                    "replace",
                    etag=expected.token,
                    match_condition=MatchConditions.IfNotModified,
                )
            case Overwrite():
                return self._upload(key, data, "overwrite")

    def delete(self, key: str, if_version: Version | None = None) -> None:
        name = self._name(key)
        etag = None if if_version is None else if_version.token
        try:
            sync(self._fs.loop, _delete, self._fs, self._bucket, name, etag)
        except ResourceModifiedError as exc:
            # Azure answers 412 both for another version and for no blob at all; one
            # read says which (it decides the error only, never whether to delete).
            try:
                exists = sync(self._fs.loop, _exists, self._fs, self._bucket, name)
            except _ERRORS as probe_exc:
                raise self._error(probe_exc, key, "delete") from exc
            if not exists:
                raise NotFound(
                    f"{self.description}: no object at {key!r}", key=key, operation="delete"
                ) from exc
            raise Conflict(
                f"{self.description}: {key!r} is not at version {etag}", key=key, operation="delete"
            ) from exc
        except _ERRORS as exc:
            self._delete_failed(exc, key, if_version)
        finally:
            self._invalidate(name)
