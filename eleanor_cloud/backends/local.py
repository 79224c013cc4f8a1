"""Local-directory backend: the embedded default store.

- Create-if-absent: write a temp file in the target directory, fsync it, then
  ``os.link`` it to the key's path. ``link`` fails if the name exists, so exactly one
  of any number of racing creators wins, and readers never see a partial file.
- Replace, overwrite and delete run under an exclusive ``fcntl.flock`` on a per-object
  lock file: check the version, write a temp file, fsync, ``os.replace``, fsync the
  directory.
- The version is a hash of the content. Inode numbers and mtimes are recycled (ABA) and
  too coarse; the state store makes every body unique (``write_id``), so a content hash
  is a true version for it. Raw byte users have the same ABA caveat as S3 ETags.

Works across processes on one host. Not for NFS or other network filesystems, whose
``flock`` and ``link`` semantics vary: use an object store there.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from eleanor_cloud.backends._listing import roll_up
from eleanor_cloud.backends.base import (
    Create,
    Overwrite,
    Replace,
    Version,
    WriteMode,
)
from eleanor_cloud.errors import (
    AccessDenied,
    AlreadyExists,
    BackendError,
    Conflict,
    InvalidKey,
    NotFound,
    NotSupported,
    Unavailable,
)

__all__ = ["LocalBackend", "content_version"]

# Our own temp and lock files; keys may never use this name prefix.
_RESERVED = ".eleanor-"


def content_version(data: bytes) -> Version:
    """The version of a body on the local backend: a 128-bit BLAKE2 digest."""
    return Version(hashlib.blake2b(data, digest_size=16).hexdigest())


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalBackend:
    """Objects as files under ``root``; safe across processes on one host (not NFS)."""

    def __init__(
        self, root: str | os.PathLike[str], *, fsync: bool = True, lock_timeout: float = 10.0
    ) -> None:
        self._root = Path(root).expanduser().absolute()
        self._fsync = fsync
        # A process frozen (SIGSTOP) while it holds an object's lock would block every
        # other writer of that object forever: give up after this long, Unavailable.
        self._lock_timeout = float(lock_timeout)

    @property
    def root(self) -> Path:
        return self._root

    @property
    def description(self) -> str:
        return self._root.as_uri()

    # -- paths -------------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        for part in parts:
            if part in ("", ".", "..") or part.startswith(_RESERVED) or "\x00" in part:
                raise InvalidKey(key, "is not a relative path of plain segments", field="key")
        return self._root.joinpath(*parts)

    def _temp_path(self, path: Path) -> Path:
        return path.with_name(f"{_RESERVED}tmp-{uuid.uuid4().hex}")

    def _lock_path(self, path: Path) -> Path:
        return path.with_name(f"{_RESERVED}{path.name}.lock")

    def _write_temp(self, path: Path, data: bytes) -> Path:
        temp = self._temp_path(path)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if self._fsync:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                temp.unlink()
            raise
        os.close(fd)
        return temp

    def _sync_dir(self, directory: Path) -> None:
        if self._fsync:
            _fsync_dir(directory)

    @contextlib.contextmanager
    def _locked(self, path: Path) -> Iterator[None]:
        lock_path = self._lock_path(path)
        while True:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                self._lock(fd, lock_path)
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

    def _lock(self, fd: int, lock_path: Path) -> None:
        """``flock`` the object's lock, waiting at most ``lock_timeout`` seconds."""
        deadline = time.monotonic() + self._lock_timeout
        pause = 0.001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise Unavailable(
                        f"{lock_path}: held by another process for over "
                        f"{self._lock_timeout:g}s (a frozen holder?); try again later",
                        operation="lock",
                    ) from None
                time.sleep(pause)  # the holder is mid-write: a few milliseconds, usually
                pause = min(pause * 2, 0.05)

    def _translate(self, exc: OSError, key: str, operation: str) -> Exception:
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

    # -- protocol ----------------------------------------------------------------------

    def read(self, key: str) -> tuple[bytes, Version]:
        path = self._path(key)
        try:
            data = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFound(
                f"{self.description}: no object at {key!r}", key=key, operation="read"
            ) from None
        except OSError as exc:
            raise self._translate(exc, key, "read") from exc
        return data, content_version(data)

    def write(self, key: str, data: bytes, mode: WriteMode) -> Version:
        path = self._path(key)
        data = bytes(data)
        try:
            match mode:
                case Create():
                    self._create(key, path, data)
                case Replace(version=expected):
                    self._replace(key, path, data, expected)
                case Overwrite():
                    self._replace(key, path, data, None)
        except (NotFound, Conflict, NotSupported):
            raise
        except OSError as exc:
            raise self._translate(exc, key, str(mode)) from exc
        return content_version(data)

    def _create(self, key: str, path: Path, data: bytes) -> None:
        # A concurrent delete may remove an emptied directory between makedirs and the
        # temp file: retry a few times rather than fail a legitimate create.
        for attempt in range(5):
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                temp = self._write_temp(path, data)
            except FileNotFoundError:
                if attempt == 4:
                    raise
                continue
            try:
                os.link(temp, path)
            except FileExistsError:
                raise AlreadyExists(
                    f"{self.description}: {key!r} already exists", key=key, operation="create"
                ) from None
            except OSError as exc:
                if exc.errno in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV):
                    raise NotSupported(
                        "create", self.description, detail=f"hard links unavailable ({exc})"
                    ) from exc
                raise
            finally:
                with contextlib.suppress(FileNotFoundError):
                    temp.unlink()
            self._sync_dir(path.parent)
            return

    def _replace(self, key: str, path: Path, data: bytes, expected: Version | None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._locked(path):
            if expected is not None:
                try:
                    current = path.read_bytes()
                except FileNotFoundError:
                    raise Conflict(
                        f"{self.description}: {key!r} does not exist (expected "
                        f"version {expected.token})",
                        key=key,
                        operation="replace",
                    ) from None
                if content_version(current) != expected:
                    raise Conflict(
                        f"{self.description}: {key!r} is not at version {expected.token}",
                        key=key,
                        operation="replace",
                    )
            temp = self._write_temp(path, data)
            try:
                os.replace(temp, path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    temp.unlink()
                raise
            self._sync_dir(path.parent)

    def delete(self, key: str, if_version: Version | None = None) -> None:
        path = self._path(key)
        if not path.parent.is_dir():
            if if_version is not None:
                raise NotFound(
                    f"{self.description}: no object at {key!r}", key=key, operation="delete"
                )
            return
        try:
            with self._locked(path):
                if if_version is not None:
                    try:
                        current = path.read_bytes()
                    except FileNotFoundError:
                        raise NotFound(
                            f"{self.description}: no object at {key!r}", key=key, operation="delete"
                        ) from None
                    if content_version(current) != if_version:
                        raise Conflict(
                            f"{self.description}: {key!r} is not at version {if_version.token}",
                            key=key,
                            operation="delete",
                        )
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                # Unlinked while held: waiters notice the inode change and relock.
                with contextlib.suppress(FileNotFoundError):
                    self._lock_path(path).unlink()
                self._sync_dir(path.parent)
        except (NotFound, Conflict):
            raise
        except OSError as exc:
            raise self._translate(exc, key, "delete") from exc
        self._prune(path.parent)

    def _prune(self, directory: Path) -> None:
        # Empty task directories would otherwise list as tasks forever.
        while directory != self._root and self._root in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent

    def list(self, prefix: str, delimiter: str | None = None) -> Iterator[str]:
        base, _, _ = prefix.rpartition("/")
        start = self._root.joinpath(*base.split("/")) if base else self._root
        return roll_up(self._walk(start, base, prefix, delimiter), prefix, delimiter)

    def _walk(self, directory: Path, rel: str, prefix: str, delimiter: str | None) -> Iterator[str]:
        try:
            # Sort as the keys will read ("a/" after "a.json") so output is lexicographic.
            entries = sorted(
                os.scandir(directory), key=lambda e: e.name + "/" if e.is_dir() else e.name
            )
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            if entry.name.startswith(_RESERVED):
                continue
            key = f"{rel}/{entry.name}" if rel else entry.name
            if entry.is_dir(follow_symlinks=False):
                sub = key + "/"
                if not (sub.startswith(prefix) or prefix.startswith(sub)):
                    continue
                if delimiter == "/" and sub.startswith(prefix):
                    if self._has_objects(Path(entry.path)):
                        yield sub
                    continue
                yield from self._walk(Path(entry.path), key, prefix, delimiter)
            elif key.startswith(prefix):
                yield key

    def _has_objects(self, directory: Path) -> bool:
        for _dirpath, _dirs, files in os.walk(directory):
            if any(not name.startswith(_RESERVED) for name in files):
                return True
        return False


def from_url(url: str, *, fsync: bool = True) -> tuple[LocalBackend, str]:
    """``file:///abs/dir`` or a plain path (relative to the working directory)."""
    if "://" in url:
        from urllib.parse import unquote, urlsplit

        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            from eleanor_cloud.errors import ConfigurationError

            raise ConfigurationError(
                f"file URL {url!r} names host {parts.netloc!r}; use file:///absolute/path"
            )
        path = unquote(parts.path)
    else:
        path = url
    return LocalBackend(path, fsync=fsync), ""
