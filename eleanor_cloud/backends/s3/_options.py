"""What an S3 backend accepts before it makes a request: bucket name, extra request
arguments, client configuration and key shape. Each refusal is a one-line
``ConfigurationError`` or ``InvalidKey``, raised before any I/O."""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError

from eleanor_cloud.errors import ConfigurationError, InvalidKey

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_s3 import S3Client

__all__ = [
    "ALLOWED_EXTRA_ARGS",
    "CONNECT_TIMEOUT",
    "READ_TIMEOUT",
    "TOTAL_MAX_ATTEMPTS",
    "WORST_CASE_CALL_SECONDS",
    "build_client",
    "check_key",
    "client_config",
    "validate_bucket",
    "validate_extra_args",
]

# What may be added to requests. SSE-C is absent on purpose: it would need the key on
# every GET too, and a lost key makes every checkpoint unreadable.
ALLOWED_EXTRA_ARGS = frozenset({"ServerSideEncryption", "SSEKMSKeyId", "ExpectedBucketOwner"})
_SSE_VALUES = ("AES256", "aws:kms", "aws:kms:dsse")
_ACCOUNT_ID = re.compile(r"[0-9]{12}")
# Names S3 accepts today (3-63 characters) plus the legacy us-east-1 ones (upper case,
# underscores, up to 255): the point is a clear error before any request, not policing.
_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]")
_MAX_KEY_BYTES = 1024

# How long one S3 call may take, bounded well below a lease's renewal interval (20 s at
# the default 60 s TTL): botocore's defaults (60 s connect, 60 s read, per attempt) let a
# stalled connection hold a renewal past the lease's own deadline. AWS's guidance for
# small objects is to retry a GET or PUT that has not answered in 2 s on a new
# connection; every object this library writes is small (a 30 MB result still streams:
# the read timeout bounds each wait for bytes, not the whole transfer). 1 s to connect
# is Linux's initial SYN retransmission time, which in-region S3 never needs.
CONNECT_TIMEOUT = 1.0
READ_TIMEOUT = 2.0
# botocore's standard mode default: the first try and two retries, with jittered waits
# of at most 1 s and then 2 s between them.
TOTAL_MAX_ATTEMPTS = 3
_BACKOFF_SECONDS = (1.0, 2.0)
# 3 x (1 + 2) + 1 + 2 = 12 s when every attempt hangs. With the default TTL a renewal
# that hangs that long at t=20 s gives up at 32 s, and the next one (52 s) is still
# sent before the holder's local deadline (54 s = TTL - TTL/10).
WORST_CASE_CALL_SECONDS = TOTAL_MAX_ATTEMPTS * (CONNECT_TIMEOUT + READ_TIMEOUT) + sum(
    _BACKOFF_SECONDS[: TOTAL_MAX_ATTEMPTS - 1]
)


def validate_bucket(bucket: object) -> str:
    """Return ``bucket`` if it can be an S3 bucket name, else raise ``ConfigurationError``."""
    if not isinstance(bucket, str) or not bucket:
        raise ConfigurationError(
            f"S3 bucket name must be a non-empty string, got {bucket!r}", operation="open_store"
        )
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise ConfigurationError(
            f"invalid S3 bucket name {bucket!r}: use 3-63 lower-case letters, digits, "
            "'.' and '-', starting and ending with a letter or digit",
            operation="open_store",
        )
    return bucket


def validate_extra_args(extra_args: Mapping[str, Any] | None) -> dict[str, str]:
    """A copy of ``extra_args`` if every entry is one S3 would honour as meant."""
    if extra_args is None:
        return {}
    if not isinstance(extra_args, Mapping):
        raise ConfigurationError(
            f"extra_args must be a mapping, got {type(extra_args).__name__}", operation="open_store"
        )
    unknown = sorted(set(extra_args) - ALLOWED_EXTRA_ARGS)
    if unknown:
        raise ConfigurationError(
            f"unsupported S3 extra_args {unknown}; allowed: {sorted(ALLOWED_EXTRA_ARGS)}",
            operation="open_store",
        )
    for name, value in extra_args.items():
        if not isinstance(value, str) or not value:
            raise ConfigurationError(
                f"extra_args[{name!r}] must be a non-empty string, got {value!r}",
                operation="open_store",
            )
    sse = extra_args.get("ServerSideEncryption")
    if sse is not None and sse not in _SSE_VALUES:
        raise ConfigurationError(
            f"extra_args['ServerSideEncryption'] must be one of {list(_SSE_VALUES)}, got {sse!r}",
            operation="open_store",
        )
    if "SSEKMSKeyId" in extra_args and not str(sse or "").startswith("aws:kms"):
        raise ConfigurationError(
            "extra_args['SSEKMSKeyId'] needs ServerSideEncryption 'aws:kms' or 'aws:kms:dsse'",
            operation="open_store",
        )
    owner = extra_args.get("ExpectedBucketOwner")
    if owner is not None and not _ACCOUNT_ID.fullmatch(owner):
        raise ConfigurationError(
            f"extra_args['ExpectedBucketOwner'] must be a 12-digit AWS account id, got {owner!r}",
            operation="open_store",
        )
    return dict(extra_args)


def _env_or_profile_sets(session: Any, env_name: str, profile_name: str) -> bool:
    if os.environ.get(env_name):
        return True
    # A boto3 session keeps its botocore session in ``_session``; a botocore one is it.
    core = getattr(session, "_session", session)
    try:
        scoped = core.get_scoped_config() if core is not None else {}
    except BotoCoreError:  # e.g. a missing profile: botocore reports it on client creation
        return False
    return bool(scoped.get(profile_name))


def client_config(session: Any, config: Config | None) -> Config:
    """The client's configuration: argument > environment/profile > these defaults.

    Defaults: standard retry mode, :data:`TOTAL_MAX_ATTEMPTS` attempts,
    :data:`CONNECT_TIMEOUT` and :data:`READ_TIMEOUT`. ``AWS_RETRY_MODE`` /
    ``AWS_MAX_ATTEMPTS`` (or the profile's ``retry_mode`` / ``max_attempts``) replace the
    retry defaults; anything set in ``config`` replaces the rest.
    """
    retries: dict[str, Any] = {}
    if not _env_or_profile_sets(session, "AWS_RETRY_MODE", "retry_mode"):
        retries["mode"] = "standard"
    user = dict(getattr(config, "retries", None) or {}) if config is not None else {}
    # Both spellings of the attempt count: adding ours next to a user's max_attempts
    # would silently win over it (botocore prefers total_max_attempts).
    if not _env_or_profile_sets(session, "AWS_MAX_ATTEMPTS", "max_attempts") and not (
        {"max_attempts", "total_max_attempts"} & set(user)
    ):
        retries["total_max_attempts"] = TOTAL_MAX_ATTEMPTS
    # Config.merge replaces the retries dict whole; merge its keys so a user who sets
    # only max_attempts still gets standard mode.
    retries.update(user)
    base = Config(connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT)
    merged = base.merge(config) if config is not None else base
    return merged.merge(Config(retries=retries)) if retries else merged  # type: ignore[arg-type]


def build_client(
    bucket: str,
    client: S3Client | None,
    session: boto3.Session | None,
    config: Config | None,
    endpoint_url: str | None,
    region_name: str | None,
) -> S3Client:
    """The injected ``client`` as is, or one built from the other pieces."""
    if client is not None:
        given = [
            name
            for name, value in (
                ("session", session),
                ("config", config),
                ("endpoint_url", endpoint_url),
                ("region_name", region_name),
            )
            if value is not None
        ]
        if given:
            raise ConfigurationError(
                f"pass either client= or {', '.join(given)}=, not both: an injected "
                "client is used as is",
                operation="open_store",
            )
        return client
    try:
        if session is None:
            return _default_client(endpoint_url, region_name, config)
        # A caller who made a boto3.Session has imported boto3: no import is paid here.
        if not _is_boto3_session(session):
            raise ConfigurationError(
                f"session must be a boto3.Session, got {type(session).__name__}",
                operation="open_store",
            )
        return session.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region_name,
            config=client_config(session, config),
        )
    except (BotoCoreError, ValueError) as exc:
        raise ConfigurationError(
            f"cannot create an S3 client for s3://{bucket}: {exc}", operation="open_store"
        ) from exc


def _is_boto3_session(session: object) -> bool:
    module = sys.modules.get("boto3.session")
    return module is not None and isinstance(session, module.Session)


# Clients built without a session= of the caller's come from a new botocore session
# each (credentials, profile and region resolved then, exactly as ``boto3.client``
# resolves them: boto3's sessions are botocore sessions underneath), sharing one data
# loader per data path, so the S3 service model, endpoint rules and partitions are
# parsed once per process, not once per store (a warm Lambda invocation that opens its
# store again does not parse them again). The client is botocore's: boto3 adds nothing
# to an S3 client but the transfer manager's helpers (``upload_file``...), which no
# backend call uses, and importing and injecting them is most of 100 ms of a cold
# start. Pass ``session=boto3.Session()`` (or ``client=``) to get a boto3 client.
_LOADERS: dict[str | None, Any] = {}
_LOADERS_LOCK = threading.Lock()


def _default_client(
    endpoint_url: str | None, region_name: str | None, config: Config | None
) -> S3Client:
    session = botocore.session.get_session()
    data_path = session.get_config_variable("data_path")
    with _LOADERS_LOCK:
        loader = _LOADERS.get(data_path)
        if loader is None:
            loader = _LOADERS[data_path] = session.get_component("data_loader")
    session.register_component("data_loader", loader)
    client = session.create_client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region_name,
        config=client_config(session, config),
    )
    return cast("S3Client", client)


def check_key(key: object) -> str:
    """``key`` if S3 would store it under exactly that name (no ``.``/``..``/empty parts)."""
    if not isinstance(key, str):
        raise InvalidKey(key, f"must be a str, not {type(key).__name__}", field="key")
    if not key:
        raise InvalidKey(key, "must not be empty", field="key")
    if len(key.encode("utf-8", "surrogatepass")) > _MAX_KEY_BYTES:
        raise InvalidKey(key, f"must be at most {_MAX_KEY_BYTES} bytes in UTF-8", field="key")
    for part in key.split("/"):
        if part in ("", ".", "..") or "\x00" in part:
            raise InvalidKey(key, "is not a relative path of plain segments", field="key")
    return key
