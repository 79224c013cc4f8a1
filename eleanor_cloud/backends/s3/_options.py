"""What an S3 backend accepts before it makes a request: bucket name, extra request
arguments, client configuration and key shape. Each refusal is a one-line
``ConfigurationError`` or ``InvalidKey``, raised before any I/O."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError

from eleanor_cloud.errors import ConfigurationError, InvalidKey

__all__ = [
    "ALLOWED_EXTRA_ARGS",
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
    core = getattr(session, "_session", None)  # boto3 keeps its botocore session here
    try:
        scoped = core.get_scoped_config() if core is not None else {}
    except BotoCoreError:  # e.g. a missing profile: botocore reports it on client creation
        return False
    return bool(scoped.get(profile_name))


def client_config(session: Any, config: Config | None) -> Config:
    """Standard retry mode unless the user chose otherwise (argument > env/profile > us)."""
    retries: dict[str, Any] = {}
    if not _env_or_profile_sets(session, "AWS_RETRY_MODE", "retry_mode"):
        retries["mode"] = "standard"
    user = dict(getattr(config, "retries", None) or {}) if config is not None else {}
    # Config.merge replaces the retries dict whole; merge its keys so a user who sets
    # only max_attempts still gets standard mode.
    retries.update(user)
    if config is None:
        return Config(retries=retries) if retries else Config()  # type: ignore[arg-type]
    return config.merge(Config(retries=retries)) if retries else config  # type: ignore[arg-type]


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
