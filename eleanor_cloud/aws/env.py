"""Configuration from the environment, shared by the Lambda handler and the runner."""

from __future__ import annotations

import os
import threading

from eleanor_cloud.errors import ConfigurationError
from eleanor_cloud.store.state_store import StateStore

__all__ = [
    "DEFAULT_GRACE_MARGIN",
    "DEFAULT_GRACE_SECONDS",
    "GRACE_ENV",
    "GRACE_MARGIN_ENV",
    "STOP_TIMEOUT_ENV",
    "STORE_ENV",
    "env_float",
    "grace_from_env",
    "store_from_env",
]

# The same variable the CLI reads, so one task definition serves both.
STORE_ENV = "ELEANOR_STORE"

# ECS's default stopTimeout is 30 s: keep 5 s to record the attempt and release.
DEFAULT_GRACE_SECONDS = 25.0
DEFAULT_GRACE_MARGIN = 5.0
GRACE_ENV = "ELEANOR_GRACE_SECONDS"
STOP_TIMEOUT_ENV = "ELEANOR_STOP_TIMEOUT_SECONDS"
GRACE_MARGIN_ENV = "ELEANOR_GRACE_MARGIN_SECONDS"

_lock = threading.Lock()
_stores: dict[str, StateStore] = {}


def env_float(name: str, default: float, *, minimum: float = 0.0) -> float:
    """A non-negative number from the environment; a bad value is a clear error."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigurationError(f"${name} must be a number of seconds, got {raw!r}") from exc
    if value < minimum:
        raise ConfigurationError(f"${name} must be >= {minimum}, got {value}")
    return value


def store_from_env(variable: str = STORE_ENV) -> StateStore:
    """The store named by ``$ELEANOR_STORE`` (e.g. ``s3://bucket/prefix``), opened once.

    Cached per process: a warm Lambda container reuses the boto3 client (and its
    connection pool) instead of paying for a new one on every invocation.
    """
    url = os.environ.get(variable, "").strip()
    if not url:
        raise ConfigurationError(
            f"${variable} is not set: give the store URL, e.g. s3://my-bucket/eleanor "
            "(the StoreUrl output of infra/state-bucket.yaml)",
            operation="open_store",
        )
    with _lock:
        store = _stores.get(url)
        if store is None:
            from eleanor_cloud.store.registry import open_store

            store = open_store(url)
            _stores[url] = store
        return store


def grace_from_env() -> float:
    """The grace period from the environment (see :mod:`eleanor_cloud.aws.runner`)."""
    if os.environ.get(GRACE_ENV, "").strip():
        return env_float(GRACE_ENV, DEFAULT_GRACE_SECONDS)
    if os.environ.get(STOP_TIMEOUT_ENV, "").strip():
        stop_timeout = env_float(STOP_TIMEOUT_ENV, 30.0)
        margin = env_float(GRACE_MARGIN_ENV, DEFAULT_GRACE_MARGIN)
        return max(0.0, stop_timeout - margin)
    return DEFAULT_GRACE_SECONDS
