"""Any other fsspec filesystem, only on explicit, labelled request.

Best-effort checks then unconditional writes, for ONE writer at a time: the check and
the write are two requests, so two writers can both create, and a compare-and-swap can
overwrite a write made in between. The state store cannot work without create and
compare-and-swap, so those are emulated here, loudly; a conditional delete, which
nothing needs, is refused with ``NotSupported`` rather than emulated too.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from eleanor_cloud.backends._listing import listing
from eleanor_cloud.backends.base import Create, Overwrite, Replace, Version, WriteMode
from eleanor_cloud.backends.fsspec._hashed import content_version, require_version
from eleanor_cloud.backends.fsspec._labels import filesystem_label, primary_protocol
from eleanor_cloud.errors import (
    AccessDenied,
    AlreadyExists,
    BackendError,
    EleanorError,
    NotFound,
    NotSupported,
)

__all__ = ["UnsafeBackendWarning", "UnsafeFilesystemBackend"]


class UnsafeBackendWarning(UserWarning):
    """A backend was opened with ``unsafe_unconditional=True``: two writers can collide."""


class UnsafeFilesystemBackend:
    """Check-then-write on a filesystem without preconditions; versions are content hashes.

    Used only with ``unsafe_unconditional=True``; keys arrive checked by
    :class:`~eleanor_cloud.backends.fsspec.FsspecBackend`.
    """

    def __init__(self, fs: Any, root: str) -> None:
        self._fs = fs
        self._root = fs._strip_protocol(root).rstrip("/")
        self._label = filesystem_label(fs)

    @property
    def description(self) -> str:
        return (
            f"fsspec+{primary_protocol(self._fs)}://{self._root.lstrip('/')} "
            "(UNSAFE: unconditional writes)"
        )

    def _path(self, key: str) -> str:
        return f"{self._root}/{key}" if self._root else key

    def _fail(self, exc: OSError, key: str, operation: str) -> EleanorError:
        if isinstance(exc, PermissionError):
            return AccessDenied(
                f"{self.description}: permission denied for {key!r}: {exc}",
                key=key,
                operation=operation,
            )
        return BackendError(
            f"{self.description}: {operation} of {key!r} failed: {exc}",
            key=key,
            operation=operation,
        )

    def _current(self, key: str) -> bytes | None:
        try:
            return bytes(self._fs.cat_file(self._path(key)))
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        except OSError as exc:
            raise self._fail(exc, key, "read") from exc

    def read(self, key: str) -> tuple[bytes, Version]:
        data = self._current(key)
        if data is None:
            raise NotFound(f"{self.description}: no object at {key!r}", key=key, operation="read")
        return data, content_version(data)

    def write(self, key: str, data: bytes, mode: WriteMode) -> Version:
        match mode:
            case Create():
                operation = "create"
                if self._current(key) is not None:
                    raise AlreadyExists(
                        f"{self.description}: {key!r} already exists", key=key, operation=operation
                    )
            case Replace(version=expected):
                operation = "replace"
                require_version(self.description, key, self._current(key), expected, operation)
            case Overwrite():
                operation = "overwrite"
        path = self._path(key)
        try:
            self._fs.makedirs(self._fs._parent(path), exist_ok=True)
            self._fs.pipe_file(path, data)
        except OSError as exc:
            raise self._fail(exc, key, operation) from exc
        return content_version(data)

    def delete(self, key: str, if_version: Version | None = None) -> None:
        if if_version is not None:
            raise NotSupported(
                "conditional delete",
                self.description,
                detail="a filesystem opened with unsafe_unconditional=True cannot delete "
                "atomically at a version; delete unconditionally",
            )
        try:
            self._fs.rm_file(self._path(key))
        except FileNotFoundError:
            pass  # deleting what is not there is a no-op
        except OSError as exc:
            raise self._fail(exc, key, "delete") from exc

    def list(self, prefix: str, delimiter: str | None = None) -> Iterator[str]:
        base = self._path(prefix).rpartition("/")[0] or self._root
        cut = len(self._root) + 1 if self._root else 0
        self._fs.invalidate_cache()  # listings are cached by many filesystems
        try:
            found = self._fs.find(base, withdirs=False, detail=False)
        except FileNotFoundError:
            found = []
        except OSError as exc:
            raise self._fail(exc, prefix, "list") from exc
        return listing((self._fs._strip_protocol(p)[cut:] for p in found), prefix, delimiter)
