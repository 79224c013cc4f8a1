"""What the obstore backend accepts before it makes a request: key shape, time bounds,
client and retry options, where each store's endpoint comes from, and the process.

Each refusal is a one-line ``ConfigurationError`` or ``InvalidKey``, raised before I/O.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from eleanor_cloud.errors import ConfigurationError, InvalidKey

__all__ = [
    "CONNECT_TIMEOUT",
    "MAX_RETRIES",
    "READ_TIMEOUT",
    "RETRY_TIMEOUT",
    "WORST_CASE_CALL_SECONDS",
    "azure_endpoint",
    "check_key",
    "client_options",
    "configured_endpoint",
    "gcs_endpoint",
    "mapping",
    "retry_config",
    "s3_endpoint",
    "same_process",
]

# The same bounds as the boto3 backend, for the same reason: one call must give up well
# inside a lease's renewal interval (20 s at the default 60 s TTL). object_store's own
# defaults (5 s to connect, no read timeout, 30 s per request, 10 retries within 3
# minutes) let a stalled connection hold a renewal past the holder's deadline.
CONNECT_TIMEOUT = 1.0
# Waiting for bytes (response headers or the next chunk of a body), reset by each read:
# a 30 MB result still streams, a silent connection is dropped and retried.
READ_TIMEOUT = 2.0
# Three attempts in all, as botocore's standard mode.
MAX_RETRIES = 2
_INIT_BACKOFF = 0.1
_MAX_BACKOFF = 1.0
# object_store waits ``init`` before the first retry and at most ``2 * init`` before the
# second (its jittered exponential backoff), so a call whose every attempt hangs gives up
# after 3 x (1 + 2) + 0.1 + 0.2 = 9.3 s; no retry starts once 12 s have passed.
WORST_CASE_CALL_SECONDS = (MAX_RETRIES + 1) * (CONNECT_TIMEOUT + READ_TIMEOUT) + (
    _INIT_BACKOFF + 2 * _INIT_BACKOFF
)
RETRY_TIMEOUT = 12.0
_MAX_KEY_BYTES = 1024

# obstore runs every request on one tokio runtime per process, started by the first
# request, and its threads do not survive os.fork(): in a forked child every obstore
# call (on any store, old or new) waits forever. The pid that started the runtime is
# kept here, so that a child refuses at once instead of hanging with a lease held.
_runtime_pid: list[int] = []


def same_process() -> None:
    """Refuse to run in a process forked after obstore's runtime started."""
    pid = os.getpid()
    if not _runtime_pid:
        _runtime_pid.append(pid)
    elif _runtime_pid[0] != pid:
        raise ConfigurationError(
            f"obstore was used in process {_runtime_pid[0]} and this process ({pid}) was "
            "forked from it: obstore's runtime does not survive a fork, so every request "
            "here would hang. Start workers with the 'spawn' or 'forkserver' method (or "
            "fork before the first request), and open the store in the worker",
            operation="open_store",
        )


def check_key(key: object) -> str:
    """``key`` if every store would keep it under exactly that name.

    object_store's paths have no empty, ``.`` or ``..`` segments (it refuses them, or
    would normalise them into another name), and S3 caps keys at 1024 bytes.
    """
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


def mapping(name: str, value: object) -> dict[str, Any]:
    """A copy of an options mapping (``None`` is empty)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            f"{name} must be a mapping, got {type(value).__name__}", operation="open_store"
        )
    return dict(value)


def client_options(user: Mapping[str, Any] | None, endpoint: str | None) -> dict[str, Any]:
    """The HTTP client options: the caller's win over each default they set.

    Defaults: :data:`CONNECT_TIMEOUT`, :data:`READ_TIMEOUT`, and ``allow_http`` when the
    endpoint the caller configured is ``http://`` (naming an http endpoint is the choice;
    obstore would otherwise refuse every request to it). The default endpoints are
    https and stay so.
    """
    options: dict[str, Any] = {
        "connect_timeout": timedelta(seconds=CONNECT_TIMEOUT),
        "read_timeout": timedelta(seconds=READ_TIMEOUT),
    }
    if endpoint is not None and endpoint.lower().startswith("http://"):
        options["allow_http"] = True
    options.update(mapping("client_options", user))
    return options


def retry_config(user: Mapping[str, Any] | None) -> dict[str, Any]:
    """The retry configuration: :data:`MAX_RETRIES` retries with a short backoff within
    :data:`RETRY_TIMEOUT`; the caller's keys win (``backoff`` merged key by key)."""
    given = mapping("retry_config", user)
    backoff: dict[str, Any] = {
        "init_backoff": timedelta(seconds=_INIT_BACKOFF),
        "max_backoff": timedelta(seconds=_MAX_BACKOFF),
        "base": 2.0,
    }
    backoff.update(mapping("retry_config['backoff']", given.pop("backoff", None)))
    config: dict[str, Any] = {
        "max_retries": MAX_RETRIES,
        "retry_timeout": timedelta(seconds=RETRY_TIMEOUT),
        "backoff": backoff,
    }
    config.update(given)
    return config


def _first(*values: object) -> str | None:
    for value in values:
        if isinstance(value, str) and value:
            return value
    return None


def s3_endpoint(explicit: str | None, config: Mapping[str, Any]) -> str | None:
    """The endpoint obstore will send S3 requests to, if not AWS's own.

    Precedence as boto3 users expect it and as obstore resolves it: an explicit argument,
    then the config (``aws_endpoint_url_s3`` before ``endpoint``), then
    ``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT``.
    """
    return _first(
        explicit,
        config.get("aws_endpoint_url_s3"),
        config.get("endpoint_url_s3"),
        config.get("endpoint"),
        config.get("aws_endpoint"),
        os.environ.get("AWS_ENDPOINT_URL_S3"),
        os.environ.get("AWS_ENDPOINT_URL"),
        os.environ.get("AWS_ENDPOINT"),
    )


def gcs_endpoint(explicit: str | None, config: Mapping[str, Any]) -> str | None:
    """GCS's base URL if not Google's: argument, ``base_url``, ``GOOGLE_BASE_URL``."""
    return _first(
        explicit,
        config.get("base_url"),
        config.get("google_base_url"),
        os.environ.get("GOOGLE_BASE_URL"),
    )


def azure_endpoint(explicit: str | None, config: Mapping[str, Any]) -> str | None:
    """Azure's blob endpoint if not the account's default: argument, ``endpoint``,
    ``AZURE_STORAGE_ENDPOINT``, ``AZURE_ENDPOINT``; the emulator's with
    ``use_emulator`` / ``AZURE_STORAGE_USE_EMULATOR``."""
    found = _first(
        explicit,
        config.get("endpoint"),
        config.get("azure_storage_endpoint"),
        os.environ.get("AZURE_STORAGE_ENDPOINT"),
        os.environ.get("AZURE_ENDPOINT"),
    )
    if found is None:
        emulator = config.get("use_emulator", os.environ.get("AZURE_STORAGE_USE_EMULATOR"))
        if str(emulator).lower() in ("1", "true", "yes"):
            return "http://127.0.0.1:10000"
    return found


def configured_endpoint(scheme: str, config: Mapping[str, Any]) -> str | None:
    """The endpoint a store built with ``config`` sends to, if the caller set one."""
    if scheme == "s3":
        return s3_endpoint(None, config)
    if scheme == "gs":
        return gcs_endpoint(None, config)
    if scheme == "az":
        return azure_endpoint(None, config)
    return None
