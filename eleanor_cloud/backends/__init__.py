"""Backends: bytes under keys with conditional writes (see :mod:`.base`)."""

from eleanor_cloud.backends.base import (
    CREATE,
    OVERWRITE,
    Create,
    ObjectBackend,
    Overwrite,
    Replace,
    Version,
    WriteMode,
)

__all__ = [
    "CREATE",
    "OVERWRITE",
    "Create",
    "ObjectBackend",
    "Overwrite",
    "Replace",
    "Version",
    "WriteMode",
]
