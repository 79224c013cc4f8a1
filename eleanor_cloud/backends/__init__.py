"""Backends: bytes under keys with conditional writes (see :mod:`.base`)."""

from eleanor_cloud.backends.base import (
    CREATE,
    OVERWRITE,
    Capabilities,
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
    "Capabilities",
    "Create",
    "ObjectBackend",
    "Overwrite",
    "Replace",
    "Version",
    "WriteMode",
]
