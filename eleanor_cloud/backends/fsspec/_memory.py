"""fsspec's MemoryFileSystem (process-local): every check and its write under one lock.

fsspec's own ``pipe_file(mode="create")`` checks and writes in two steps; here both
happen under a process-wide lock, so a create has exactly one winner and a
compare-and-swap loses no update among the threads of this process. Objects land in the
filesystem's own store, so ``fs.cat`` sees them. Versions are content hashes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from eleanor_cloud.backends._listing import listing
from eleanor_cloud.backends.base import Create, Overwrite, Replace, Version, WriteMode
from eleanor_cloud.backends.fsspec._hashed import content_version, require_version
from eleanor_cloud.errors import AlreadyExists, NotFound

__all__ = ["MemoryFilesystemBackend"]

# One lock for every MemoryFileSystem store in the process: MemoryFileSystem instances
# share one class-level store, so a lock per backend would not exclude another backend.
_MEMORY_LOCK = threading.Lock()


class MemoryFilesystemBackend:
    """Objects in fsspec's memory filesystem under ``root``; keys arrive checked."""

    def __init__(self, fs: Any, root: str) -> None:
        self._fs = fs
        self._root = fs._strip_protocol(root).rstrip("/")

    @property
    def description(self) -> str:
        return f"fsspec+memory://{self._root}"

    def _path(self, key: str) -> str:
        return f"{self._root}/{key}"

    def _current(self, path: str) -> bytes | None:
        if path not in self._fs.store:
            return None
        return bytes(self._fs.cat_file(path))

    def read(self, key: str) -> tuple[bytes, Version]:
        with _MEMORY_LOCK:
            data = self._current(self._path(key))
        if data is None:
            raise NotFound(f"{self.description}: no object at {key!r}", key=key, operation="read")
        return data, content_version(data)

    def write(self, key: str, data: bytes, mode: WriteMode) -> Version:
        path = self._path(key)
        with _MEMORY_LOCK:
            match mode:
                case Create():
                    if path in self._fs.store:
                        raise AlreadyExists(
                            f"{self.description}: {key!r} already exists",
                            key=key,
                            operation="create",
                        )
                case Replace(version=expected):
                    current = self._current(path)
                    require_version(self.description, key, current, expected, "replace")
                case Overwrite():
                    pass
            self._fs.pipe_file(path, data)
        return content_version(data)

    def delete(self, key: str, if_version: Version | None = None) -> None:
        path = self._path(key)
        with _MEMORY_LOCK:
            current = self._current(path)
            if if_version is not None:
                require_version(self.description, key, current, if_version, "delete")
            if current is not None:
                self._fs.rm_file(path)

    def list(self, prefix: str, delimiter: str | None = None) -> Iterator[str]:
        start = self._path(prefix)
        cut = len(self._root) + 1
        with _MEMORY_LOCK:
            found = [path[cut:] for path in list(self._fs.store) if path.startswith(start)]
        return listing(found, prefix, delimiter)
