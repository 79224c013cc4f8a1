"""S3Backend: one bucket, one boto3 client, one request per operation (see the package
docstring for the requests and what their failures mean)."""

from __future__ import annotations

import heapq
import logging
import random
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    FlexibleChecksumError,
    IncompleteReadError,
    ResponseStreamingError,
)

from eleanor_cloud.backends.base import Create, Overwrite, Replace, Version, WriteMode
from eleanor_cloud.backends.s3._errors import (
    CONDITIONAL_CONFLICT,
    annotate,
    error_code,
    retry_attempts,
    translate,
)
from eleanor_cloud.backends.s3._options import (
    build_client,
    check_key,
    validate_bucket,
    validate_extra_args,
)
from eleanor_cloud.backends.s3._probe import (
    PROBE_BODY,
    PROBE_NAME,
    ConditionsVerdict,
    refusal,
    remember,
    run_probe,
    unsafe_warning,
    verdict_for,
    verified_by_env,
)
from eleanor_cloud.errors import ConfigurationError, Conflict, EleanorError, InvalidKey, NotFound

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_s3 import S3Client

__all__ = ["DEFAULT_CONFLICT_RETRIES", "S3Backend"]

DEFAULT_CONFLICT_RETRIES = 4
_log = logging.getLogger("eleanor_cloud.backends.s3")
_CONFLICT_BACKOFF_BASE = 0.05
_CONFLICT_BACKOFF_CAP = 1.0
# A GET whose body stream broke after the headers arrived is outside botocore's retry
# loop; reading is idempotent, so it is retried here this many more times.
_BODY_RETRIES = 2


class S3Backend:
    """Objects in one S3 bucket, written with S3 conditional writes.

    Give either an injected ``client`` (used as is) or the pieces to build one:
    ``session`` (a ``boto3.Session``), ``config`` (a ``botocore.config.Config``,
    merged over the defaults: standard retries, 3 attempts, 1 s to connect, 2 s to
    read, so one call gives up within about 12 s; each setting of yours wins),
    ``endpoint_url`` and ``region_name``. Unset, boto3 resolves them as usual
    (``AWS_ENDPOINT_URL_S3``, ``AWS_REGION``, profiles, instance roles). ``extra_args`` adds
    ``ServerSideEncryption``/``SSEKMSKeyId`` to writes and ``ExpectedBucketOwner`` to
    every request. ``conflict_retries`` bounds the retries of 409
    ConditionalRequestConflict, waiting with ``sleep`` (injectable for tests).
    ``page_size`` caps keys per LIST page.

    Before its first conditional write the backend checks, once per process for its
    endpoint and bucket, that the endpoint honours ``If-None-Match``/``If-Match`` (see
    :mod:`._probe`; the probe object is ``<probe_prefix>/_probe/conditions.json``, and
    :func:`from_url` sets ``probe_prefix`` to the URL's prefix). If it does not, writes
    raise ``NotSupported``; with ``unsafe_unconditional=True`` they go ahead with an
    ``UnsafeBackendWarning`` instead (UNSAFE with two writers).

    Creating the backend makes no request.
    """

    def __init__(
        self,
        bucket: str,
        *,
        client: S3Client | None = None,
        session: boto3.Session | None = None,
        config: Config | None = None,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        extra_args: Mapping[str, str] | None = None,
        conflict_retries: int = DEFAULT_CONFLICT_RETRIES,
        page_size: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
        unsafe_unconditional: bool = False,
        probe_prefix: str = "",
    ) -> None:
        self._bucket = validate_bucket(bucket)
        if not isinstance(probe_prefix, str):
            raise ConfigurationError(
                f"probe_prefix must be a str, got {probe_prefix!r}", operation="open_store"
            )
        base = probe_prefix.strip("/")
        try:
            self._probe_key = check_key(f"{base}/{PROBE_NAME}" if base else PROBE_NAME)
        except InvalidKey as exc:
            raise InvalidKey(probe_prefix, exc.rule, field="prefix") from exc
        self._unsafe = bool(unsafe_unconditional)
        # This backend's own memo of the process-wide verdict: after the first
        # conditional write, later ones take no lock at all.
        self._conditions_checked = False
        self._conditions_lock = threading.Lock()
        self._ignores_conditions = False
        self._extra = validate_extra_args(extra_args)
        if not isinstance(conflict_retries, int) or conflict_retries < 0:
            raise ConfigurationError(
                f"conflict_retries must be a non-negative int, got {conflict_retries!r}",
                operation="open_store",
            )
        if page_size is not None and (not isinstance(page_size, int) or not 1 <= page_size <= 1000):
            raise ConfigurationError(
                f"page_size must be an int from 1 to 1000, got {page_size!r}",
                operation="open_store",
            )
        self._client: S3Client = build_client(
            bucket, client, session, config, endpoint_url, region_name
        )
        # The owner check goes on every request; encryption arguments only on writes.
        owner = self._extra.get("ExpectedBucketOwner")
        self._owner: dict[str, Any] = {"ExpectedBucketOwner": owner} if owner else {}
        self._put_extra = dict(self._extra)
        self._conflict_retries = conflict_retries
        self._page_size = page_size
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"S3Backend({self.description})"

    @property
    def bucket(self) -> str:
        """The bucket name."""
        return self._bucket

    def after_fork(self) -> None:
        """In a forked child: drop the connections inherited from the parent, so no
        two processes ever read answers off one socket (new ones open on demand)."""
        session = getattr(getattr(self._client, "_endpoint", None), "http_session", None)
        close = getattr(session, "close", None)
        if close is not None:
            close()

    @property
    def client(self) -> S3Client:
        """The boto3 client in use (register event hooks on ``client.meta.events``)."""
        return self._client

    @property
    def description(self) -> str:
        """``s3://bucket``, as error messages name it (flagged UNSAFE when writing to
        an endpoint that ignores conditions, with ``unsafe_unconditional=True``)."""
        if self._ignores_conditions:
            return f"s3://{self._bucket} (UNSAFE: the endpoint ignores conditional writes)"
        return f"s3://{self._bucket}"

    @property
    def endpoint(self) -> str:
        """The endpoint URL the client sends to (the probe's verdict is per endpoint)."""
        return str(self._client.meta.endpoint_url)

    @property
    def probe_key(self) -> str:
        """Where the conditional-write probe writes (never a task's key)."""
        return self._probe_key

    def probe_conditions(self) -> ConditionsVerdict:
        """Ask the endpoint now, with two or three conditional PutObject requests, whether it
        honours ``If-None-Match``/``If-Match``; the answer replaces the process's cached
        verdict. Writes call this themselves (once per process); ``eleanor-cloud check``
        calls it to report. Store errors (``AccessDenied``, ``Unavailable``) propagate.
        """
        verdict = self._probe()
        remember(verdict)
        return verdict

    # -- protocol ----------------------------------------------------------------------

    def read(self, key: str) -> tuple[bytes, Version]:
        """One GetObject: the body and its ETag; ``NotFound`` if absent."""
        check_key(key)
        for attempt in range(_BODY_RETRIES + 1):
            try:
                response = self._client.get_object(Bucket=self._bucket, Key=key, **self._owner)
            except (ClientError, BotoCoreError) as exc:
                raise self._translate(exc, key, "read") from exc
            body = response["Body"]
            try:
                data = body.read()
            except (IncompleteReadError, ResponseStreamingError, FlexibleChecksumError) as exc:
                if attempt < _BODY_RETRIES:
                    continue
                raise self._translate(exc, key, "read") from exc
            finally:
                body.close()
            return data, Version(response["ETag"])
        raise AssertionError("unreachable")  # pragma: no cover

    def write(self, key: str, data: bytes, mode: WriteMode) -> Version:
        """One PutObject, conditional per ``mode``; the new ETag."""
        check_key(key)
        args: dict[str, Any] = {
            "Bucket": self._bucket,
            "Key": key,
            "Body": bytes(data),
            **self._put_extra,
        }
        if key.endswith(".json"):
            args["ContentType"] = "application/json"
        expected: str | None = None
        match mode:
            case Create():
                operation = "create"
                args["IfNoneMatch"] = "*"
                self._require_conditions(key, operation)
            case Replace(version=version):
                operation = "replace"
                expected = version.token
                args["IfMatch"] = expected
                self._require_conditions(key, operation)
            case Overwrite():
                operation = "overwrite"
            case _:
                raise ConfigurationError(f"unknown write mode {mode!r}", key=key)
        response = self._call(self._client.put_object, args, key, operation, expected)
        return Version(response["ETag"])

    def delete(self, key: str, if_version: Version | None = None) -> None:
        """One DeleteObject; with ``if_version`` only if the ETag still matches."""
        check_key(key)
        args: dict[str, Any] = {"Bucket": self._bucket, "Key": key, **self._owner}
        if if_version is None:
            self._call(self._client.delete_object, args, key, "delete", None)
            return
        args["IfMatch"] = if_version.token
        try:
            self._call(self._client.delete_object, args, key, "delete", if_version.token)
        except NotFound as exc:
            # A retried conditional delete answered 404: the first attempt, whose answer
            # was lost, most likely deleted it. The object is gone either way.
            cause = exc.__cause__
            if isinstance(cause, ClientError) and retry_attempts(cause) > 0:
                return
            raise

    def list(self, prefix: str, delimiter: str | None = None) -> Iterator[str]:
        """ListObjectsV2 page by page; common prefixes merged in lexicographic order."""
        if not isinstance(prefix, str):
            raise InvalidKey(prefix, f"must be a str, not {type(prefix).__name__}", field="prefix")
        return self._list(prefix, delimiter)

    # -- internals ---------------------------------------------------------------------

    def _require_conditions(self, key: str, operation: str) -> None:
        """Refuse to write conditionally to an endpoint that ignores conditions."""
        if self._conditions_checked:
            return
        with self._conditions_lock:
            if self._conditions_checked:
                return
            if verified_by_env(self.endpoint, self._bucket):
                # The deployment vouches for this endpoint and bucket (see _probe): its
                # word, logged, instead of two or three PUTs on every cold start.
                _log.info(
                    "s3://%s at %s: conditional writes taken as verified from %s; no probe sent",
                    self._bucket,
                    self.endpoint,
                    "ELEANOR_CONDITIONS_VERIFIED",
                )
                self._conditions_checked = True
                return
            try:
                verdict = verdict_for(self.endpoint, self._bucket, self._probe)
            except EleanorError as exc:
                cause = exc.__cause__
                if not isinstance(cause, ClientError | BotoCoreError):
                    raise
                # Reported for the write the caller asked for (its key, its IAM action):
                # the probe is this write's first step, not an operation of its own.
                error = self._translate(cause, key, operation)
                raise annotate(
                    error, f"(in the conditional-write probe on {self._probe_key!r} first)"
                ) from cause
            if not verdict.honoured:
                if not self._unsafe:
                    raise refusal(verdict)
                # Imported here: only this path needs it, and the fsspec package is where
                # the one unsafe-backend warning class lives, so one filter covers both.
                from eleanor_cloud.backends.fsspec import UnsafeBackendWarning

                self._ignores_conditions = True
                warnings.warn(unsafe_warning(verdict), UnsafeBackendWarning, stacklevel=4)
            self._conditions_checked = True

    def _probe(self) -> ConditionsVerdict:
        return run_probe(
            self._probe_put, endpoint=self.endpoint, bucket=self._bucket, key=self._probe_key
        )

    def _probe_put(self, condition: dict[str, str]) -> bool:
        """One probe PutObject; False if the store refused it on its condition."""
        key = self._probe_key
        args: dict[str, Any] = {
            "Bucket": self._bucket,
            "Key": key,
            "Body": PROBE_BODY,
            "ContentType": "application/json",
            **self._put_extra,
            **condition,
        }
        operation = "create" if "IfNoneMatch" in condition else "replace"
        try:
            self._call(self._client.put_object, args, key, operation, condition.get("IfMatch"))
        except Conflict:
            # 412 (or 404 for If-Match on a missing object, or 409s past the retries):
            # the store evaluated the condition and did not write.
            return False
        return True

    def _translate(
        self, exc: Exception, key: str | None, operation: str, expected: str | None = None
    ) -> EleanorError:
        return translate(
            exc,
            bucket=self._bucket,
            key=key,
            operation=operation,
            expected=expected,
            owner=self._owner.get("ExpectedBucketOwner"),
        )

    def _call(
        self,
        method: Callable[..., Any],
        args: dict[str, Any],
        key: str,
        operation: str,
        expected: str | None,
    ) -> Any:
        for attempt in range(self._conflict_retries + 1):
            try:
                return method(**args)
            except ClientError as exc:
                if error_code(exc) == CONDITIONAL_CONFLICT and attempt < self._conflict_retries:
                    # S3: another conditional write to this key was in flight; retry.
                    cap = min(_CONFLICT_BACKOFF_CAP, _CONFLICT_BACKOFF_BASE * 2**attempt)
                    self._sleep(random.uniform(0, cap))
                    continue
                raise self._translate(exc, key, operation, expected) from exc
            except BotoCoreError as exc:
                raise self._translate(exc, key, operation, expected) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _list(self, prefix: str, delimiter: str | None) -> Iterator[str]:
        args: dict[str, Any] = {"Bucket": self._bucket, "Prefix": prefix, **self._owner}
        if delimiter:
            args["Delimiter"] = delimiter
        if self._page_size is not None:
            args["PaginationConfig"] = {"PageSize": self._page_size}
        pages = iter(self._client.get_paginator("list_objects_v2").paginate(**args))
        while True:
            # Only the fetch is guarded: an exception thrown into this generator by its
            # consumer must not be mistaken for an S3 failure.
            try:
                page = next(pages)
            except StopIteration:
                return
            except (ClientError, BotoCoreError) as exc:
                raise self._translate(exc, prefix or None, "list") from exc
            keys = [item["Key"] for item in page.get("Contents", ())]
            prefixes = [item["Prefix"] for item in page.get("CommonPrefixes", ())]
            yield from heapq.merge(keys, prefixes) if prefixes else keys
