"""What the s3fs, gcsfs and adlfs backends share.

Each of them drives a bucketed object store (an S3/GCS bucket, an Azure container) under
a key prefix, through the filesystem's own event loop, and turns the filesystem's
exceptions into eleanor_cloud errors. Only the requests and that translation differ; the
rest lives here once so that the three cannot drift apart.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, ClassVar, TypeVar

from fsspec.asyn import sync

from eleanor_cloud.backends._listing import listing
from eleanor_cloud.backends.base import Version, WriteMode
from eleanor_cloud.backends.fsspec._labels import filesystem_label
from eleanor_cloud.errors import ConfigurationError, EleanorError, NotFound

__all__ = ["BucketBackend", "split_root"]

_T = TypeVar("_T")


def split_root(fs: Any, root: str) -> tuple[str, str]:
    """``"bucket/dir"`` -> ``("bucket", "dir/")``; ``"bucket"`` -> ``("bucket", "")``.

    Refuses a filesystem opened with ``asynchronous=True``: these backends drive the
    filesystem's own event loop.
    """
    if getattr(fs, "asynchronous", False):
        raise ConfigurationError(
            f"{filesystem_label(fs)} was created with asynchronous=True; pass a synchronous "
            "instance (the default)",
            operation="open_store",
        )
    bucket, _, base = fs._strip_protocol(root).strip("/").partition("/")
    if not bucket:
        raise ConfigurationError(
            f"fsspec backend root {root!r} names no bucket or container", operation="open_store"
        )
    return bucket, f"{base.strip('/')}/" if base.strip("/") else ""


class BucketBackend(ABC):
    """A backend over ``bucket[/prefix]`` of an async fsspec filesystem.

    Subclasses set ``_scheme`` (for the description), ``_errors`` (what their filesystem
    raises) and ``_lister`` (an ``async (fs, bucket, prefix) -> names``), translate
    errors in ``_error`` and implement ``read``, ``write`` and ``delete``. Keys arrive
    checked by :class:`~eleanor_cloud.backends.fsspec.FsspecBackend`.
    """

    _scheme: ClassVar[str]
    _errors: ClassVar[tuple[type[BaseException], ...]]
    _lister: Callable[[Any, str, str], Awaitable[list[str]]]

    def __init__(self, fs: Any, root: str) -> None:
        self._fs = fs
        self._bucket, self._base = split_root(fs, root)

    @property
    def _where(self) -> str:
        """The bucket as the description names it."""
        return self._bucket

    @property
    def description(self) -> str:
        return f"fsspec+{self._scheme}://{self._where}/{self._base}".rstrip("/")

    def _name(self, key: str) -> str:
        return self._base + key

    @abstractmethod
    def _error(self, exc: BaseException, key: str, operation: str) -> EleanorError:
        """The eleanor_cloud error for ``exc``, raised by ``operation`` on ``key``."""

    @abstractmethod
    def read(self, key: str) -> tuple[bytes, Version]: ...

    @abstractmethod
    def write(self, key: str, data: bytes, mode: WriteMode) -> Version: ...

    @abstractmethod
    def delete(self, key: str, if_version: Version | None = None) -> None: ...

    def _run(
        self, key: str, operation: str, request: Callable[..., Awaitable[_T]], *args: Any
    ) -> _T:
        """``request(fs, bucket, *args)`` on the filesystem's loop, failures translated."""
        try:
            result: _T = sync(self._fs.loop, request, self._fs, self._bucket, *args)
        except self._errors as exc:
            raise self._error(exc, key, operation) from exc
        return result

    def _invalidate(self, name: str) -> None:
        # fsspec caches listings and info: a write or delete must not leave them stale.
        self._fs.invalidate_cache(f"{self._bucket}/{name}")

    def _delete_failed(self, exc: BaseException, key: str, if_version: Version | None) -> None:
        """Raise the translated failure of a delete, unless there is nothing to report.

        Deleting a missing object unconditionally is a no-op (deletes are idempotent);
        with ``if_version`` the caller must hear that the object is gone.
        """
        error = self._error(exc, key, "delete")
        if isinstance(error, NotFound) and if_version is None:
            return
        raise error from exc

    def list(self, prefix: str, delimiter: str | None = None) -> Iterator[str]:
        names = self._run(prefix, "list", self._lister, self._base + prefix)
        cut = len(self._base)
        # The stores list in key order already; `listing` also drops directory markers.
        return listing((name[cut:] for name in names), prefix, delimiter)
