"""Compare-and-swap on obstore's ``LocalStore``, which has none of its own.

object_store's local filesystem creates atomically (a staging file, then a hard link
that fails if the name exists) but answers ``PutMode::Update`` with NotImplemented, and
its ETag is inode, mtime and size: tokens the kernel recycles (ABA) and that coarse
clocks repeat. So on a local directory the version is a hash of the content, exactly
:func:`eleanor_cloud.backends.local.content_version` (the state store makes every body
unique with its ``write_id``), and replace, overwrite and delete run under an exclusive
``fcntl.flock`` on the per-object lock file the local-directory backend uses
(``.eleanor-<name>.lock`` beside the object): check the version, then obstore's atomic
rename. Every writer takes that lock, so the check and the write are one step for all
of them; a create needs no lock (the link is the arbiter).

obstore does not fsync: a checkpoint survives the process being killed, not the machine
losing power. Use ``file://`` (the local-directory backend, which fsyncs) where that
matters.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import obstore

from eleanor_cloud.backends.base import Version
from eleanor_cloud.backends.local import content_version
from eleanor_cloud.errors import Conflict, InvalidKey

__all__ = ["RESERVED", "LocalCas"]

# The local-directory backend's name prefix for its own temp and lock files: keys never
# use it, and listings never show it.
RESERVED = ".eleanor-"
_CREATE_ATTEMPTS = 5


class LocalCas:
    """Create, compare-and-swap, overwrite and delete under ``root`` via ``store``.

    Store errors (obstore's, ``OSError``) propagate for the backend to translate;
    ``Conflict`` is raised here, where the version is compared.
    """

    def __init__(self, store: Any, root: Path, description: str) -> None:
        self._store = store
        self._root = root
        self._description = description

    def path(self, key: str) -> Path:
        parts = key.split("/")
        if any(part.startswith(RESERVED) for part in parts):
            raise InvalidKey(key, f"must not have a segment starting with {RESERVED!r}")
        return self._root.joinpath(*parts)

    @contextlib.contextmanager
    def _locked(self, path: Path) -> Iterator[None]:
        lock_path = path.with_name(f"{RESERVED}{path.name}.lock")
        while True:
            fd = self._open_lock(lock_path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                # A deleter unlinks the lock file while holding it; whoever waited on the
                # old inode must lock the new file, or two holders would coexist.
                try:
                    same = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
                except FileNotFoundError:
                    same = False
            except BaseException:
                os.close(fd)
                raise
            if same:
                break
            os.close(fd)
        try:
            yield
        finally:
            os.close(fd)

    @staticmethod
    def _open_lock(lock_path: Path) -> int:
        for attempt in range(_CREATE_ATTEMPTS):
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            try:
                return os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except FileNotFoundError:
                # A delete pruned the directory between the mkdir and the open.
                if attempt == _CREATE_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def read(self, key: str) -> tuple[bytes, Version]:
        self.path(key)
        data = bytes(obstore.get(self._store, key).bytes())
        return data, content_version(data)

    def create(self, key: str, data: bytes) -> Version:
        self.path(key)
        for attempt in range(_CREATE_ATTEMPTS):
            try:
                obstore.put(self._store, key, data, mode="create", use_multipart=False)
            except FileNotFoundError:
                # A delete pruned the emptied directory between obstore's mkdir and its
                # link: retry a few times rather than fail a legitimate create.
                if attempt == _CREATE_ATTEMPTS - 1:
                    raise
                continue
            break
        return content_version(data)

    def replace(self, key: str, data: bytes, expected: Version | None) -> Version:
        path = self.path(key)
        with self._locked(path):
            if expected is not None:
                try:
                    current = bytes(obstore.get(self._store, key).bytes())
                except FileNotFoundError:
                    raise Conflict(
                        f"{self._description}: {key!r} does not exist (expected version "
                        f"{expected.token})",
                        key=key,
                        operation="replace",
                    ) from None
                if content_version(current) != expected:
                    raise Conflict(
                        f"{self._description}: {key!r} is not at version {expected.token}",
                        key=key,
                        operation="replace",
                    )
            obstore.put(self._store, key, data, mode="overwrite", use_multipart=False)
        return content_version(data)

    def delete(self, key: str) -> None:
        path = self.path(key)
        if not path.parent.is_dir():
            return
        with self._locked(path):
            with contextlib.suppress(FileNotFoundError):
                obstore.delete(self._store, key)
            # Unlinked while held: waiters notice the inode change and lock the new file.
            with contextlib.suppress(FileNotFoundError):
                path.with_name(f"{RESERVED}{path.name}.lock").unlink()
        self._prune(path.parent)

    def _prune(self, directory: Path) -> None:
        # Empty task directories are no objects, but nobody would ever remove them.
        while directory != self._root and self._root in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent

    def keys(self, parent: str | None) -> Iterator[str]:
        """Every object under ``parent`` (any order), without our lock files."""
        for chunk in obstore.list(self._store, parent, chunk_size=1000):
            for meta in chunk:
                name = meta["path"]
                if not any(part.startswith(RESERVED) for part in name.split("/")):
                    yield name
