"""Translate obstore failures into the eleanor_cloud error tree, at the boundary.

obstore raises a handful of classes (``AlreadyExistsError``, ``PreconditionError``,
``FileNotFoundError``, ``PermissionDeniedError``, ``GenericError``...) whose message is
object_store's whole error chain: the request line, the HTTP status, the service's
error body and a multi-line ``Debug source``. The class says what object_store decided;
the status and the service's error code (``NoSuchBucket``, ``ContainerNotFound``,
``ConditionalRequestConflict``...) are only in the text, so :func:`parse` reads them
from it. :func:`translate` then decides, in one table, what the failure means for the
caller, and writes one line naming the store, the bucket and the key; the original
exception stays attached as ``__cause__`` for the whole chain.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from obstore import exceptions as obx

from eleanor_cloud.errors import (
    AccessDenied,
    AlreadyExists,
    BackendError,
    BucketNotFound,
    ConfigurationError,
    Conflict,
    EleanorError,
    InvalidKey,
    NotFound,
    NotSupported,
    Unavailable,
)

__all__ = ["CONDITIONAL_CONFLICT", "Failure", "annotate", "parse", "translate"]

# S3's answer when another conditional write to the key is in flight: retried by the
# backend, and a Conflict (not an AlreadyExists) if it persists.
CONDITIONAL_CONFLICT = "ConditionalRequestConflict"

_STATUS = re.compile(r"status code: (\d{3})|\bstatus: (\d{3})\b|\(code: (\d{3})\)")
_CODE = re.compile(r"<Code>([^<]{1,100})</Code>")
_MESSAGE = re.compile(r"<Message>([^<]{0,300})")
_JSON_MESSAGE = re.compile(r'"message"\s*:\s*"([^"]{0,300})"')
_RETRIES = re.compile(r"after (\d+) retries")
_WHITESPACE = re.compile(r"\s+")

# Where a missing bucket or container shows (S3, Azure; GCS says it in words).
_BUCKET_CODES = frozenset({"NoSuchBucket", "ContainerNotFound"})
_BUCKET_WORDS = ("bucket does not exist", "container does not exist", "no such bucket")
# The credentials themselves were refused: a policy change would not help.
_CREDENTIAL_CODES = frozenset(
    {
        "ExpiredToken",
        "InvalidAccessKeyId",
        "InvalidToken",
        "RequestTimeTooSkewed",
        "SignatureDoesNotMatch",
        "AuthenticationFailed",
        "InvalidAuthenticationInfo",
    }
)
# A credential lookup that failed before any request to the store: the instance
# metadata service, the container credentials endpoint, an OAuth token request.
_CREDENTIAL_WORDS = (
    "169.254.169.254",
    "169.254.170.2",
    "fd00:ec2::254",
    "/latest/api/token",
    "/latest/meta-data/",
    "error getting credentials",
    "token request",
    "tokenrequest",
)
# object_store's transport failures carry an ``HttpError { kind: ... }`` and no status.
_TRANSPORT = re.compile(r"HttpError \{\s*kind: (\w+)")
_CREDENTIAL_HINTS = {
    "s3": "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, run with a role attached, or pass "
    "session= (profiles, SSO) or credential_provider=",
    "gs": "set GOOGLE_APPLICATION_CREDENTIALS or pass config= or credential_provider=",
    "az": "set AZURE_STORAGE_ACCOUNT_KEY (or a SAS or token) or pass config= or "
    "credential_provider=",
}
_IAM = {
    "read": "s3:GetObject",
    "create": "s3:PutObject",
    "replace": "s3:PutObject",
    "overwrite": "s3:PutObject",
    "delete": "s3:DeleteObject",
    "list": "s3:ListBucket",
}


@dataclass(frozen=True, slots=True)
class Failure:
    """What an obstore error says, read from its text: the HTTP status (0 when no
    answer came), the service's error code and message, and the retries made."""

    status: int
    code: str
    message: str
    retries: int
    headline: str
    transport: str  # object_store's HttpErrorKind (Connect, Timeout...) or ""

    @property
    def said(self) -> str:
        """``HTTP 412 PreconditionFailed: <message>`` or the error's first line."""
        if not self.status:
            return self.headline
        parts = [f"HTTP {self.status}"]
        if self.code:
            parts.append(self.code)
        text = " ".join(parts)
        return f"{text}: {self.message}" if self.message else text


def _one_line(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()


def parse(exc: BaseException) -> Failure:
    """The status, code, message and retry count in an obstore error's text."""
    text = str(exc)
    status = 0
    found = _STATUS.search(text)
    if found:
        status = int(next(g for g in found.groups() if g))
    code_match = _CODE.search(text)
    code = code_match.group(1).strip() if code_match else ""
    message_match = _MESSAGE.search(text) or _JSON_MESSAGE.search(text)
    message = _one_line(message_match.group(1)) if message_match else ""
    retries_match = _RETRIES.search(text)
    retries = int(retries_match.group(1)) if retries_match else 0
    # The first line, without the service's error body (quoted above) or the debug dump.
    head = text.split("\n\nDebug source", 1)[0]
    for cut in (": <?xml", ": {", "\n"):
        head = head.split(cut, 1)[0]
    headline = f"{type(exc).__name__}: {_one_line(head)[:300]}"
    transport_match = _TRANSPORT.search(text)
    transport = transport_match.group(1) if transport_match else ""
    return Failure(status, code, message, retries, headline, transport)


def annotate(error: EleanorError, note: str) -> EleanorError:
    """``error`` with ``note`` appended to its one-line message."""
    error.message = f"{error.message} {note}"
    error.args = (error.message,)
    return error


def _attempts(failure: Failure) -> str:
    attempts = failure.retries + 1
    return f"after {attempts} attempt{'s' if attempts != 1 else ''}"


def translate(
    exc: BaseException,
    *,
    scheme: str,
    bucket: str,
    key: str | None,
    operation: str,
    expected: str | None = None,
) -> EleanorError:
    """The eleanor_cloud error for an obstore failure of ``operation`` on ``key``.

    ``scheme`` and ``bucket`` name the store as users write it (``s3``/``gs``/``az``/
    ``file``); ``operation`` is ``read``, ``create``, ``replace``, ``overwrite``,
    ``delete`` or ``list``; ``expected`` is the version a compare-and-swap named. The
    caller raises the result ``from exc``.
    """
    where = f"{scheme}://{bucket}/{key}" if key is not None else f"{scheme}://{bucket}"
    failure = parse(exc)
    said = failure.said
    lowered = str(exc).lower()

    def made(kind: type[EleanorError], message: str) -> EleanorError:
        return kind(message, key=key, operation=operation)

    if failure.code in _BUCKET_CODES or any(w in lowered for w in _BUCKET_WORDS):
        noun = "container" if scheme == "az" else "bucket"
        return made(
            BucketNotFound,
            f"{scheme}://{bucket}: {noun} does not exist ({operation} of {key!r}: {said})",
        )
    if failure.code == CONDITIONAL_CONFLICT:
        return made(
            Conflict,
            f"{where}: {operation} kept conflicting with concurrent conditional writes "
            f"to the same key ({said}) {_attempts(failure)}",
        )
    if isinstance(exc, obx.AlreadyExistsError | obx.PreconditionError | obx.NotModifiedError):
        if operation == "create":
            return made(AlreadyExists, f"{where} already exists (create refused: {said})")
        if failure.status == 404:
            return made(
                Conflict,
                f"{where} does not exist (expected version {expected}; "
                f"{operation} refused: {said})",
            )
        return made(Conflict, f"{where} is not at version {expected} ({operation} refused: {said})")
    if isinstance(exc, FileNotFoundError):
        if operation == "replace":
            return made(
                Conflict,
                f"{where} does not exist (expected version {expected}; "
                f"{operation} refused: {said})",
            )
        return made(NotFound, f"{where}: no such object ({operation}: {said})")
    if isinstance(exc, obx.GenericError) and any(w in lowered for w in _CREDENTIAL_WORDS):
        # Before the status checks: a refused metadata-service request carries a 403
        # that is not the bucket's answer, so the message quotes the lookup itself.
        return made(
            AccessDenied,
            f"{where}: {operation} failed: no usable credentials ({failure.headline}); "
            f"{_CREDENTIAL_HINTS.get(scheme, 'pass config= or credential_provider=')}",
        )
    if failure.code in _CREDENTIAL_CODES or isinstance(exc, obx.UnauthenticatedError):
        return made(
            AccessDenied,
            f"{where}: {operation} refused: the credentials are invalid or expired ({said})",
        )
    if isinstance(exc, obx.PermissionDeniedError) or failure.status == 403:
        need = f"; it needs {_IAM[operation]}" if scheme == "s3" and operation in _IAM else ""
        return made(AccessDenied, f"{where}: access denied for {operation} ({said}){need}")
    if isinstance(exc, obx.NotSupportedError | NotImplementedError):
        return NotSupported(operation, f"{scheme}://{bucket} (obstore)", detail=said)
    if isinstance(exc, obx.InvalidPathError) or (isinstance(exc, ValueError) and "path" in lowered):
        return InvalidKey(key, f"obstore refused the path ({_one_line(str(exc))[:200]})")
    if isinstance(exc, obx.UnknownConfigurationKeyError):
        return made(ConfigurationError, f"{where}: {said}")
    if "url scheme is not allowed" in lowered:
        return made(
            ConfigurationError,
            f"{where}: {operation} refused before sending: an http:// endpoint needs "
            "client_options={'allow_http': True}",
        )
    if failure.status >= 500 or failure.status in (408, 429) or failure.code == "SlowDown":
        return made(
            Unavailable,
            f"{where}: the store was unavailable for {operation} {_attempts(failure)} ({said})",
        )
    if failure.transport and not failure.status:
        return made(
            Unavailable,
            f"{where}: {operation} failed {_attempts(failure)}: the store was unreachable or "
            f"the connection broke ({failure.transport}: {said})",
        )
    if failure.status == 301 or failure.code in (
        "PermanentRedirect",
        "AuthorizationHeaderMalformed",
    ):
        return made(
            BackendError,
            f"{where}: {operation} sent to the wrong region or endpoint ({said}); pass "
            "region_name= or endpoint_url=",
        )
    return made(BackendError, f"{where}: {operation} failed ({said})")
