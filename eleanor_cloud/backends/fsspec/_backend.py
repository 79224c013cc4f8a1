"""FsspecBackend: checks keys, then hands each operation to the backend that knows the
filesystem's own preconditions (chosen here, by the filesystem's class)."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Iterator
from typing import Any

from eleanor_cloud.backends.base import ObjectBackend, Version, WriteMode
from eleanor_cloud.backends.fsspec._labels import filesystem_label
from eleanor_cloud.backends.fsspec._unsafe import UnsafeBackendWarning, UnsafeFilesystemBackend
from eleanor_cloud.errors import ConfigurationError, InvalidKey, NotSupported

__all__ = ["FsspecBackend", "filesystem_backend", "is_bucketed"]

# The backend for each filesystem class eleanor_cloud knows (``module.qualname``), and
# whether the first path segment is a bucket/container (then the rest is a key prefix).
# Import paths, not classes: only the SDK of the filesystem actually opened is imported.
_BACKENDS: dict[str, tuple[str, bool]] = {
    "s3fs.core.S3FileSystem": ("eleanor_cloud.backends.fsspec._s3fs:S3fsBackend", True),
    "gcsfs.core.GCSFileSystem": ("eleanor_cloud.backends.fsspec._gcsfs:GcsfsBackend", True),
    "adlfs.spec.AzureBlobFileSystem": (
        "eleanor_cloud.backends.fsspec._adlfs:AdlfsBackend",
        True,
    ),
    "fsspec.implementations.local.LocalFileSystem": (
        "eleanor_cloud.backends.fsspec._local:LocalFilesystemBackend",
        False,
    ),
    "fsspec.implementations.memory.MemoryFileSystem": (
        "eleanor_cloud.backends.fsspec._memory:MemoryFilesystemBackend",
        False,
    ),
}


def _known(fs: object) -> tuple[str, bool] | None:
    for cls in type(fs).__mro__:
        found = _BACKENDS.get(f"{cls.__module__}.{cls.__qualname__}")
        if found is not None:
            return found
    return None


def is_bucketed(fs: object) -> bool:
    """Whether ``fs`` is an object store whose first path segment is a bucket."""
    known = _known(fs)
    return known is not None and known[1]


def filesystem_backend(fs: Any, root: str, *, unsafe_unconditional: bool = False) -> ObjectBackend:
    """The backend for ``fs`` rooted at ``root`` (``bucket[/path]`` or a directory).

    Raises ``NotSupported`` naming the filesystem and what it lacks when eleanor_cloud
    knows no atomic conditional writes for it, unless ``unsafe_unconditional``.
    """
    known = _known(fs)
    if known is None:
        if not unsafe_unconditional:
            raise NotSupported(
                "create-if-absent, compare-and-swap and conditional delete",
                filesystem_label(fs),
                detail="eleanor_cloud performs conditional writes only on s3fs, gcsfs, "
                "adlfs, LocalFileSystem and MemoryFileSystem (fsspec itself has no "
                "compare-and-swap). Use one of those, or pass unsafe_unconditional=True "
                "to write without preconditions (UNSAFE with two writers)",
            )
        return UnsafeFilesystemBackend(fs, root)
    module_name, _, class_name = known[0].partition(":")
    backend: ObjectBackend = getattr(importlib.import_module(module_name), class_name)(fs, root)
    return backend


def _check_key(key: object) -> str:
    if not isinstance(key, str) or not key:
        raise InvalidKey(key, "must be a non-empty str", field="key")
    if "\x00" in key or key.startswith("/") or key.endswith("/"):
        raise InvalidKey(key, "is not a relative path of plain segments", field="key")
    for part in key.split("/"):
        if part in ("", ".", ".."):
            raise InvalidKey(key, "is not a relative path of plain segments", field="key")
    return key


def _check_prefix(prefix: object) -> str:
    if not isinstance(prefix, str):
        raise InvalidKey(prefix, "must be a str", field="prefix")
    if "\x00" in prefix or prefix.startswith("/") or "//" in prefix:
        raise InvalidKey(prefix, "is not a relative path of plain segments", field="prefix")
    if any(part in (".", "..") for part in prefix.split("/")[:-1]):
        raise InvalidKey(prefix, "must not contain '.' or '..' segments", field="prefix")
    return prefix


class FsspecBackend:
    """An :class:`~eleanor_cloud.backends.base.ObjectBackend` over an fsspec filesystem.

    ``root`` is where the keys live inside ``fs``: ``"bucket"`` or ``"bucket/dir"`` on
    object stores, a directory on local and memory filesystems. The filesystem's class
    picks the backend doing the work (see the package docstring); an unknown one raises
    ``NotSupported`` unless ``unsafe_unconditional=True``, which is unsafe with two
    writers and warns with :class:`UnsafeBackendWarning`.

    Keys and prefixes are checked here, once, before the chosen backend sees them: a
    path that fsspec would normalise (``a//b``, ``../x``) must never name another object.
    """

    def __init__(self, fs: Any, root: str, *, unsafe_unconditional: bool = False) -> None:
        if not isinstance(root, str):
            raise ConfigurationError(
                f"fsspec backend root must be a str, got {root!r}", operation="open_store"
            )
        self.fs = fs
        self._inner = filesystem_backend(fs, root, unsafe_unconditional=unsafe_unconditional)
        self.unsafe = isinstance(self._inner, UnsafeFilesystemBackend)
        if self.unsafe:
            warnings.warn(
                f"{self._inner.description}: opened with unsafe_unconditional=True; "
                "writes are not atomic, so two concurrent writers can both win a create "
                "or lose an update",
                UnsafeBackendWarning,
                stacklevel=2,
            )

    def __repr__(self) -> str:
        return f"FsspecBackend({self.description})"

    @property
    def strategy(self) -> ObjectBackend:
        """The filesystem's own backend doing the conditional operations."""
        return self._inner

    @property
    def description(self) -> str:
        return self._inner.description

    def read(self, key: str) -> tuple[bytes, Version]:
        return self._inner.read(_check_key(key))

    def write(self, key: str, data: bytes, mode: WriteMode) -> Version:
        return self._inner.write(_check_key(key), bytes(data), mode)

    def delete(self, key: str, if_version: Version | None = None) -> None:
        self._inner.delete(_check_key(key), if_version)

    def list(self, prefix: str, delimiter: str | None = None) -> Iterator[str]:
        return self._inner.list(_check_prefix(prefix), delimiter)
