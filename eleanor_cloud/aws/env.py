"""Configuration from the environment, shared by the Lambda handler and the runner."""

from __future__ import annotations

import os
import threading

from eleanor_cloud.errors import ConfigurationError
from eleanor_cloud.store.state_store import StateStore

__all__ = ["STORE_ENV", "env_float", "store_from_env"]

# The same variable the CLI reads, so one task definition serves both.
STORE_ENV = "ELEANOR_STORE"

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
