"""Conditional writes on s3fs (``fsspec+s3://bucket/prefix``).

- create: ``PutObject`` with ``If-None-Match: *``; 412 -> ``AlreadyExists``.
- compare-and-swap: ``PutObject`` with ``If-Match: <etag>``; 412 -> ``Conflict``, and a
  missing key (404) -> ``Conflict``.
- conditional delete: ``DeleteObject`` with ``If-Match`` (s3fs's ``rm_file`` drops it).
- version: the ETag of the PUT response, or of the GET response that returned the body
  (one request, so body and version always match; s3fs's cached ``info`` can be stale).

All requests go through ``S3FileSystem.call_s3``, i.e. the same ``put_object`` that
``pipe_file`` sends for a small body, with s3fs's credentials, retries and error
translation. Not ``pipe_file`` itself: above its multipart threshold it passes the
condition to ``CreateMultipartUpload``, where s3fs filters it out, silently making the
write unconditional. s3fs drops any parameter the installed botocore does not know, so
the backend first checks that botocore's S3 model has ``IfMatch``/``IfNoneMatch``:
an old botocore would turn every conditional write into a blind one.

S3 answers 409 ``ConditionalRequestConflict`` when a concurrent conditional request on
the same key is in flight; such a write did not happen and is retried a few times.
"""

from __future__ import annotations

import functools
import random
import time
from typing import Any

import aiohttp
import botocore
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

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
    NotSupported,
    Unavailable,
)

__all__ = ["S3fsBackend"]

_ERRORS = (OSError, BotoCoreError, ClientError, aiohttp.ClientError)
_CONFLICT_RETRIES = 4
_UNAVAILABLE_CODES = {
    "SlowDown",
    "ServiceUnavailable",
    "InternalError",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "Throttling",
    "ThrottlingException",
}


@functools.cache
def _missing_condition_parameters() -> tuple[str, ...]:
    import botocore.session

    model = botocore.session.get_session().get_service_model("s3")
    wanted = (("PutObject", "IfNoneMatch"), ("PutObject", "IfMatch"), ("DeleteObject", "IfMatch"))
    missing = []
    for operation, param in wanted:
        shape = model.operation_model(operation).input_shape
        if shape is None or param not in shape.members:
            missing.append(f"{operation}.{param}")
    return tuple(missing)


def _error_info(exc: BaseException) -> tuple[str, int]:
    """The S3 error code and HTTP status behind an s3fs exception (its ``__cause__``)."""
    seen: BaseException | None = exc
    for _ in range(4):
        if seen is None:
            break
        response = getattr(seen, "response", None)
        if isinstance(response, dict):
            code = str(response.get("Error", {}).get("Code", ""))
            status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            return code, status
        seen = seen.__cause__ or seen.__context__
    return "", 0


def _precondition_failed(exc: BaseException) -> bool:
    code, status = _error_info(exc)
    return code == "PreconditionFailed" or status == 412


async def _get_object(fs: Any, bucket: str, name: str) -> tuple[bytes, str]:
    response = await fs._call_s3("get_object", Bucket=bucket, Key=name)
    body = response["Body"]
    try:
        data = await body.read()
    finally:
        body.close()
    return bytes(data), str(response["ETag"])


async def _list_keys(fs: Any, bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    while True:
        response = await fs._call_s3("list_objects_v2", **kwargs)
        keys.extend(str(item["Key"]) for item in response.get("Contents", []))
        if not response.get("IsTruncated"):
            return keys
        kwargs["ContinuationToken"] = response["NextContinuationToken"]


class S3fsBackend(BucketBackend):
    """s3fs: S3's own ``If-None-Match``/``If-Match`` preconditions, ETags as versions."""

    _scheme = "s3"
    _errors = _ERRORS
    _lister = staticmethod(_list_keys)

    def __init__(self, fs: Any, root: str) -> None:
        super().__init__(fs, root)
        missing = _missing_condition_parameters()
        if missing:
            raise NotSupported(
                "create-if-absent and compare-and-swap",
                f"s3fs with botocore {botocore.__version__}",
                detail=f"its S3 model lacks {', '.join(missing)} (s3fs would silently drop "
                "them); install botocore >= 1.35.50",
            )

    def _error(self, exc: BaseException, key: str, operation: str) -> EleanorError:
        code, status = _error_info(exc)
        where = f"{self.description}: {operation} of {key!r}"
        if code == "NoSuchBucket":
            return BucketNotFound(
                f"{where}: bucket {self._bucket!r} does not exist", key=key, operation=operation
            )
        if code == "NoSuchKey" or isinstance(exc, FileNotFoundError):
            return NotFound(
                f"{self.description}: no object at {key!r}", key=key, operation=operation
            )
        if (
            isinstance(exc, (PermissionError, NoCredentialsError))
            or status in (401, 403)
            or code == "AccessDenied"
        ):
            return AccessDenied(f"{where}: access denied: {exc}", key=key, operation=operation)
        if (
            code in _UNAVAILABLE_CODES
            or status >= 500
            or status == 429
            or isinstance(exc, (BotoCoreError, aiohttp.ClientError, TimeoutError, ConnectionError))
        ):
            return Unavailable(f"{where}: S3 unavailable: {exc}", key=key, operation=operation)
        return BackendError(f"{where} failed: {exc}", key=key, operation=operation)

    # -- protocol ----------------------------------------------------------------------

    def read(self, key: str) -> tuple[bytes, Version]:
        data, etag = self._run(key, "read", _get_object, self._name(key))
        return data, Version(etag)

    def _put(self, key: str, data: bytes, operation: str, **condition: str) -> Version:
        name = self._name(key)
        for attempt in range(_CONFLICT_RETRIES):
            try:
                response = self._fs.call_s3(
                    "put_object", Bucket=self._bucket, Key=name, Body=data, **condition
                )
            except _ERRORS as exc:
                code, status = _error_info(exc)
                if code == "ConditionalRequestConflict" or (status == 409 and condition):
                    if attempt + 1 < _CONFLICT_RETRIES:
                        # Back off with jitter: a concurrent conditional write is in flight.
                        time.sleep(random.uniform(0, 0.05 * 2**attempt))
                        continue
                    raise Conflict(
                        f"{self.description}: {operation} of {key!r} kept "
                        f"colliding with concurrent writes",
                        key=key,
                        operation=operation,
                    ) from exc
                raise self._put_error(exc, key, operation) from exc
            self._invalidate(name)
            return Version(str(response["ETag"]))
        raise AssertionError("unreachable")  # pragma: no cover

    def _put_error(self, exc: BaseException, key: str, operation: str) -> EleanorError:
        if operation == "create" and (
            isinstance(exc, FileExistsError) or _precondition_failed(exc)
        ):
            return AlreadyExists(
                f"{self.description}: {key!r} already exists", key=key, operation=operation
            )
        if operation == "replace":
            code, _ = _error_info(exc)
            if _precondition_failed(exc) or isinstance(exc, FileExistsError):
                return Conflict(
                    f"{self.description}: {key!r} is not at the expected version",
                    key=key,
                    operation=operation,
                )
            if code == "NoSuchKey":
                return Conflict(
                    f"{self.description}: {key!r} does not exist", key=key, operation=operation
                )
        return self._error(exc, key, operation)

    def write(self, key: str, data: bytes, mode: WriteMode) -> Version:
        match mode:
            case Create():
                return self._put(key, data, "create", IfNoneMatch="*")
            case Replace(version=expected):
                return self._put(key, data, "replace", IfMatch=expected.token)
            case Overwrite():
                return self._put(key, data, "overwrite")

    def delete(self, key: str, if_version: Version | None = None) -> None:
        name = self._name(key)
        condition = {"IfMatch": if_version.token} if if_version is not None else {}
        try:
            self._fs.call_s3("delete_object", Bucket=self._bucket, Key=name, **condition)
        except _ERRORS as exc:
            if if_version is not None and _precondition_failed(exc):
                raise Conflict(
                    f"{self.description}: {key!r} is not at version {if_version.token}",
                    key=key,
                    operation="delete",
                ) from exc
            self._delete_failed(exc, key, if_version)
        finally:
            self._invalidate(name)
