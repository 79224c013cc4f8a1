"""The state store: typed records over any backend, and ``open_store``."""

from eleanor_cloud.store.records import Lease, Record, TaskManifest
from eleanor_cloud.store.registry import open_store, register_backend
from eleanor_cloud.store.state_store import StateStore

__all__ = ["Lease", "Record", "StateStore", "TaskManifest", "open_store", "register_backend"]
