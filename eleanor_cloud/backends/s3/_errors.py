"""Translate boto3/botocore failures into the eleanor_cloud error tree, at the boundary.

Like httpx's ``map_httpcore_exceptions``: one table decides what a library failure
means for the caller, every message is one line naming the bucket and key, and the
original exception stays attached as ``__cause__`` for whoever wants the details.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    FlexibleChecksumError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
    SSOError,
    TokenRetrievalError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from eleanor_cloud.errors import (
    AccessDenied,
    AlreadyExists,
    BackendError,
    BucketNotFound,
    ConfigurationError,
    Conflict,
    EleanorError,
    NotFound,
    Unavailable,
)

__all__ = [
    "CONDITIONAL_CONFLICT",
    "IAM_ACTIONS",
    "annotate",
    "error_code",
    "retry_attempts",
    "translate",
]

CONDITIONAL_CONFLICT = "ConditionalRequestConflict"

# The IAM action each operation needs, quoted in AccessDenied messages so the fix is
# obvious from the log line.
IAM_ACTIONS = {
    "read": "s3:GetObject",
    "create": "s3:PutObject",
    "replace": "s3:PutObject",
    "overwrite": "s3:PutObject",
    "delete": "s3:DeleteObject",
    "list": "s3:ListBucket",
}

# The credentials themselves were refused: a policy change would not help.
_CREDENTIAL_CODES = frozenset(
    {
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidAccessKeyId",
        "InvalidClientTokenId",
        "InvalidSecurity",
        "InvalidToken",
        "RequestTimeTooSkewed",
        "SignatureDoesNotMatch",
        "TokenRefreshRequired",
        "UnrecognizedClientException",
    }
)
_ACCESS_CODES = frozenset({"AccessDenied", "AccountProblem", "AllAccessDisabled"})
_TRANSIENT_CODES = frozenset(
    {
        "Busy",
        "InternalError",
        "RequestLimitExceeded",
        "RequestTimeout",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
    }
)
_REGION_CODES = frozenset(
    {
        "AuthorizationHeaderMalformed",
        "IllegalLocationConstraintException",
        "PermanentRedirect",
    }
)
_CREDENTIAL_ERRORS = (
    CredentialRetrievalError,
    NoCredentialsError,
    PartialCredentialsError,
    SSOError,
    TokenRetrievalError,
)
# Connection failures, timeouts, truncated or corrupted bodies: the request may be
# retried; botocore already did where it could.
_TRANSIENT_ERRORS = (
    BotoConnectionError,
    FlexibleChecksumError,
    HTTPClientError,
    IncompleteReadError,
)
_WHITESPACE = re.compile(r"\s+")


def _one_line(text: object) -> str:
    return _WHITESPACE.sub(" ", str(text)).strip()


def annotate(error: EleanorError, note: str) -> EleanorError:
    """``error`` with ``note`` appended to its one-line message."""
    error.message = f"{error.message} {note}"
    error.args = (error.message,)
    return error


def error_code(exc: ClientError) -> str:
    """The S3 error code of a ``ClientError`` (``""`` when the response had none)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def retry_attempts(exc: ClientError) -> int:
    """How many times botocore retried the request before this final answer."""
    return int(exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0) or 0)


def _attempts_text(exc: ClientError) -> str:
    attempts = retry_attempts(exc) + 1
    return f"after {attempts} attempt{'s' if attempts != 1 else ''}"


def translate(
    exc: Exception,
    *,
    bucket: str,
    key: str | None,
    operation: str,
    expected: str | None = None,
    owner: str | None = None,
) -> EleanorError:
    """The eleanor_cloud error for a boto3 failure of ``operation`` on ``bucket``/``key``.

    ``operation`` is one of ``read``, ``create``, ``replace``, ``overwrite``,
    ``delete``, ``list``; ``expected`` is the version a conditional write or delete
    asked for; ``owner`` the ExpectedBucketOwner sent, if any. The caller raises the
    result ``from exc``.
    """
    where = f"s3://{bucket}/{key}" if key is not None else f"s3://{bucket}"
    target = f"{key!r}" if key is not None else "the bucket"
    if isinstance(exc, ClientError):
        return _translate_client_error(exc, where, bucket, key, target, operation, expected, owner)
    if isinstance(exc, _CREDENTIAL_ERRORS):
        return AccessDenied(
            f"{where}: {operation} failed: no usable AWS credentials "
            f"({type(exc).__name__}: {_one_line(exc)}); set AWS_PROFILE or the "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY variables, or pass session=/client=",
            key=key,
            operation=operation,
        )
    if isinstance(exc, _TRANSIENT_ERRORS):
        return Unavailable(
            f"{where}: {operation} failed after botocore's retries: S3 unreachable or the "
            f"connection broke ({type(exc).__name__}: {_one_line(exc)})",
            key=key,
            operation=operation,
        )
    if isinstance(exc, ParamValidationError):
        return ConfigurationError(
            f"{where}: {operation} rejected before sending: {_one_line(exc)}",
            key=key,
            operation=operation,
        )
    if isinstance(exc, NoRegionError):
        return ConfigurationError(
            f"{where}: no AWS region configured: pass region_name= or set AWS_REGION",
            key=key,
            operation=operation,
        )
    if isinstance(exc, BotoCoreError):
        return BackendError(
            f"{where}: {operation} failed ({type(exc).__name__}: {_one_line(exc)})",
            key=key,
            operation=operation,
        )
    return BackendError(
        f"{where}: {operation} failed: {type(exc).__name__}: {_one_line(exc)}",
        key=key,
        operation=operation,
    )


def _translate_client_error(
    exc: ClientError,
    where: str,
    bucket: str,
    key: str | None,
    target: str,
    operation: str,
    expected: str | None,
    owner: str | None,
) -> EleanorError:
    code = error_code(exc)
    status = _status(exc)
    detail = _one_line(exc.response.get("Error", {}).get("Message", "")) or f"HTTP {status}"
    said = f"{code or 'HTTP ' + str(status)}: {detail}"

    if code == "PreconditionFailed" or status == 412:
        if operation == "create":
            return AlreadyExists(
                f"{where} already exists (create refused: {said})", key=key, operation=operation
            )
        return Conflict(
            f"{where} is not at version {expected} ({operation} refused: {said})",
            key=key,
            operation=operation,
        )
    if code == CONDITIONAL_CONFLICT or (status == 409 and operation != "list"):
        return Conflict(
            f"{where}: {operation} kept conflicting with concurrent conditional "
            f"writes to the same key ({said}) {_attempts_text(exc)}",
            key=key,
            operation=operation,
        )
    if code == "NoSuchBucket":
        return BucketNotFound(
            f"s3://{bucket}: bucket does not exist ({operation} of {target}: {said})",
            key=key,
            operation=operation,
        )
    if code == "NoSuchKey" or (status == 404 and key is not None):
        if operation == "replace":
            return Conflict(
                f"{where} does not exist (expected version {expected}; "
                f"{operation} refused: {said})",
                key=key,
                operation=operation,
            )
        return NotFound(
            f"{where}: no such object ({operation}: {said})", key=key, operation=operation
        )
    if code in _CREDENTIAL_CODES:
        return AccessDenied(
            f"{where}: {operation} refused: the AWS credentials are invalid or expired ({said})",
            key=key,
            operation=operation,
        )
    if code in _ACCESS_CODES or status == 403:
        action = IAM_ACTIONS.get(operation, "s3:*")
        resource = f"arn:aws:s3:::{bucket}" if operation == "list" else f"arn:aws:s3:::{bucket}/*"
        if_owner = f", or the bucket is not owned by account {owner}" if owner else ""
        return AccessDenied(
            f"{where}: access denied for {operation} ({said}); it needs "
            f"{action} on {resource}{if_owner}",
            key=key,
            operation=operation,
        )
    if code == "InvalidBucketName":
        return ConfigurationError(
            f"s3://{bucket}: invalid bucket name ({said})", key=key, operation=operation
        )
    if code in _REGION_CODES or status == 301:
        region = _bucket_region(exc.response)
        hint = f"; the bucket is in {region}: pass region_name={region!r}" if region else ""
        return BackendError(
            f"{where}: {operation} sent to the wrong region or endpoint ({said}){hint}",
            key=key,
            operation=operation,
        )
    if code in _TRANSIENT_CODES or status >= 500 or status == 429:
        return Unavailable(
            f"{where}: S3 unavailable for {operation} {_attempts_text(exc)} ({said})",
            key=key,
            operation=operation,
        )
    return BackendError(f"{where}: {operation} failed ({said})", key=key, operation=operation)


def _bucket_region(response: Mapping[str, Any]) -> str | None:
    headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    region = headers.get("x-amz-bucket-region") or response.get("Error", {}).get("Region")
    return str(region) if region else None
