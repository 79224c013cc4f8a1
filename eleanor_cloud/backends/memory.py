"""In-memory backend: one lock, versions from a counter. For tests and single processes."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator

from eleanor_cloud.backends._listing import roll_up
from eleanor_cloud.backends.base import (
    Create,
    Overwrite,
    Replace,
    Version,
    WriteMode,
)
from eleanor_cloud.errors import AlreadyExists, Conflict, NotFound

__all__ = ["MemoryBackend"]


class MemoryBackend:
    """A dict behind a lock. Each instance is its own store: there is no global registry."""

    def __init__(self, name: str = "") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._objects: dict[str, tuple[bytes, Version]] = {}
        # A process-wide counter never repeats, so versions are ABA-free by construction.
        self._counter = itertools.count(1)

    @property
    def description(self) -> str:
        return f"memory://{self._name}"

    def read(self, key: str) -> tuple[bytes, Version]:
        with self._lock:
            try:
                return self._objects[key]
            except KeyError:
                raise NotFound(
                    f"{self.description}: no object at {key!r}", key=key, operation="read"
                ) from None

    def write(self, key: str, data: bytes, mode: WriteMode) -> Version:
        data = bytes(data)
        with self._lock:
            current = self._objects.get(key)
            match mode:
                case Create():
                    if current is not None:
                        raise AlreadyExists(
                            f"{self.description}: {key!r} already exists",
                            key=key,
                            operation="create",
                        )
                case Replace(version=expected):
                    if current is None or current[1] != expected:
                        raise Conflict(
                            f"{self.description}: {key!r} is not at version {expected.token}",
                            key=key,
                            operation="replace",
                        )
                case Overwrite():
                    pass
            version = Version(str(next(self._counter)))
            self._objects[key] = (data, version)
            return version

    def delete(self, key: str, if_version: Version | None = None) -> None:
        with self._lock:
            current = self._objects.get(key)
            if if_version is not None:
                if current is None:
                    raise NotFound(
                        f"{self.description}: no object at {key!r}", key=key, operation="delete"
                    )
                if current[1] != if_version:
                    raise Conflict(
                        f"{self.description}: {key!r} is not at version {if_version.token}",
                        key=key,
                        operation="delete",
                    )
            self._objects.pop(key, None)

    def list(self, prefix: str, delimiter: str | None = None) -> Iterator[str]:
        with self._lock:
            keys = sorted(k for k in self._objects if k.startswith(prefix))
        return roll_up(keys, prefix, delimiter)


def from_url(url: str, **options: object) -> tuple[MemoryBackend, str]:
    """``memory://name/prefix``: a fresh store each call (no hidden global state)."""
    if options:
        raise TypeError(f"memory:// takes no options, got {sorted(options)}")
    rest = url.partition("://")[2]
    name, _, prefix = rest.partition("/")
    return MemoryBackend(name), prefix
