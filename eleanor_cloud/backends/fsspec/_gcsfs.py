"""Conditional writes on gcsfs (``gs://bucket/prefix``, ``fsspec+gcs://...``).

GCS preconditions are query parameters on the JSON API and the version is the object's
``generation`` (unique per write of a name, so no ABA):

- create: a one-request multipart upload with ``ifGenerationMatch=0`` (what gcsfs's
  ``pipe_file(mode="create")`` sends for a small body); 412 -> ``AlreadyExists``.
- compare-and-swap: the same upload with ``ifGenerationMatch=<generation>``; gcsfs has no
  parameter for it, so the request is made through ``GCSFileSystem._call``, with
  gcsfs's credentials and retries. 412 -> ``Conflict`` (also for a missing object).
- conditional delete: ``DELETE`` with ``ifGenerationMatch``.
- read: one media ``GET``; the generation comes from its ``x-goog-generation`` header,
  so body and version always belong together.

Zonal (rapid) buckets, which need gcsfs's experimental gRPC path, are not supported.
gcsfs turns every 412 into ``FileExistsError`` and every 404 into
``FileNotFoundError``; the operation decides what those mean here.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import aiohttp
import google.auth.exceptions
import requests
from fsspec.asyn import sync
from gcsfs.retry import HttpError

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

__all__ = ["GcsfsBackend"]

_BOUNDARY = "==eleanor-0=="
# What gcsfs raises: its renderings of HTTP statuses (OSError subclasses, ValueError for
# 400, HttpError, RuntimeError) and its transports' own failures.
_ERRORS = (
    OSError,
    ValueError,
    RuntimeError,
    HttpError,
    aiohttp.ClientError,
    requests.exceptions.RequestException,
    google.auth.exceptions.GoogleAuthError,
)


def _http_code(exc: BaseException) -> int:
    code = getattr(exc, "code", None)
    return code if isinstance(code, int) else 0


def _is_generation(version: Version) -> bool:
    # "0" would mean "only if absent": a foreign token must never change the mode.
    return version.token.isdigit() and version.token.lstrip("0") != ""


async def _upload(
    fs: Any, bucket: str, name: str, data: bytes, if_generation_match: str | None
) -> dict[str, Any]:
    metadata = json.dumps({"name": name})
    body = (
        (
            f"--{_BOUNDARY}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n"
            f"{metadata}\r\n--{_BOUNDARY}\r\nContent-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{_BOUNDARY}--".encode()
    )
    params = {} if if_generation_match is None else {"ifGenerationMatch": if_generation_match}
    out: dict[str, Any] = await fs._call(
        "POST",
        f"{fs._location}/upload/storage/v1/b/{quote(bucket, safe='')}/o",
        uploadType="multipart",
        headers={"Content-Type": f'multipart/related; boundary="{_BOUNDARY}"'},
        data=body,
        json_out=True,
        **params,
    )
    return out


async def _download(fs: Any, bucket: str, name: str) -> tuple[bytes, str | None]:
    headers, data = await fs._call("GET", fs.url(f"{bucket}/{name}"))
    generation = headers.get("x-goog-generation")
    return bytes(data), None if generation is None else str(generation)


async def _list_names(fs: Any, bucket: str, prefix: str) -> list[str]:
    names: list[str] = []
    params: dict[str, Any] = {"prefix": prefix, "maxResults": 1000}
    while True:
        page = await fs._call("GET", "b/{}/o", bucket, json_out=True, **params)
        names.extend(str(item["name"]) for item in page.get("items", []))
        token = page.get("nextPageToken")
        if not token:
            return names
        params["pageToken"] = token


class GcsfsBackend(BucketBackend):
    """gcsfs: ``ifGenerationMatch`` preconditions, generations as versions."""

    _scheme = "gs"
    _errors = _ERRORS
    _lister = staticmethod(_list_names)

    def _error(self, exc: BaseException, key: str, operation: str) -> EleanorError:
        where = f"{self.description}: {operation} of {key!r}"
        code = _http_code(exc)
        if isinstance(exc, FileNotFoundError):
            if operation in ("create", "replace", "overwrite", "list"):
                # An upload or listing gets 404 only when the bucket is missing.
                return BucketNotFound(
                    f"{where}: bucket {self._bucket!r} does not exist", key=key, operation=operation
                )
            return NotFound(
                f"{self.description}: no object at {key!r}", key=key, operation=operation
            )
        if (
            isinstance(exc, (PermissionError, google.auth.exceptions.GoogleAuthError))
            or code in (401, 403)
            or (isinstance(exc, OSError) and str(exc).startswith("Forbidden"))
        ):
            return AccessDenied(f"{where}: access denied: {exc}", key=key, operation=operation)
        if (
            code == 429
            or code >= 500
            or isinstance(
                exc,
                (
                    requests.exceptions.RequestException,
                    aiohttp.ClientError,
                    TimeoutError,
                    ConnectionError,
                ),
            )
        ):
            return Unavailable(f"{where}: GCS unavailable: {exc}", key=key, operation=operation)
        return BackendError(f"{where} failed: {exc}", key=key, operation=operation)

    def _generation(self, out: dict[str, Any], key: str, operation: str) -> Version:
        generation = out.get("generation")
        if generation in (None, ""):
            raise BackendError(
                f"{self.description}: {operation} of {key!r} returned no generation",
                key=key,
                operation=operation,
            )
        return Version(str(generation))

    # -- protocol ----------------------------------------------------------------------

    def read(self, key: str) -> tuple[bytes, Version]:
        data, generation = self._run(key, "read", _download, self._name(key))
        if generation is None:
            raise BackendError(
                f"{self.description}: read of {key!r} returned no x-goog-generation header",
                key=key,
                operation="read",
            )
        return data, Version(generation)

    def _put(self, key: str, data: bytes, operation: str, match: str | None) -> Version:
        name = self._name(key)
        try:
            out = sync(self._fs.loop, _upload, self._fs, self._bucket, name, data, match)
        except FileExistsError as exc:  # gcsfs's rendering of 412 Precondition Failed
            if operation == "create":
                raise AlreadyExists(
                    f"{self.description}: {key!r} already exists", key=key, operation=operation
                ) from exc
            raise Conflict(
                f"{self.description}: {key!r} is not at generation {match}",
                key=key,
                operation=operation,
            ) from exc
        except _ERRORS as exc:
            raise self._error(exc, key, operation) from exc
        finally:
            self._invalidate(name)
        return self._generation(out, key, operation)

    def write(self, key: str, data: bytes, mode: WriteMode) -> Version:
        match mode:
            case Create():
                return self._put(key, data, "create", "0")
            case Replace(version=expected):
                if not _is_generation(expected):
                    raise Conflict(
                        f"{self.description}: {key!r}: {expected.token!r} is not a GCS generation",
                        key=key,
                        operation="replace",
                    )
                return self._put(key, data, "replace", expected.token)
            case Overwrite():
                return self._put(key, data, "overwrite", None)

    def delete(self, key: str, if_version: Version | None = None) -> None:
        name = self._name(key)
        params = {} if if_version is None else {"ifGenerationMatch": if_version.token}
        if if_version is not None and not _is_generation(if_version):
            raise Conflict(
                f"{self.description}: {key!r}: {if_version.token!r} is not a GCS generation",
                key=key,
                operation="delete",
            )
        try:
            self._fs.call("DELETE", "b/{}/o/{}", self._bucket, name, **params)
        except FileExistsError as exc:  # 412
            raise Conflict(
                f"{self.description}: {key!r} is not at generation "
                f"{params.get('ifGenerationMatch')}",
                key=key,
                operation="delete",
            ) from exc
        except _ERRORS as exc:  # 404 -> NotFound: no error unless if_version was given
            self._delete_failed(exc, key, if_version)
        finally:
            self._invalidate(name)
