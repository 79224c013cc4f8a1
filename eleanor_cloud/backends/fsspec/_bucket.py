"""The plumbing the s3fs, gcsfs and adlfs strategies share.

Each of them drives a bucketed object store (an S3/GCS bucket, an Azure container) under
a key prefix, through the filesystem's own event loop, and turns the filesystem's
exceptions into eleanor_cloud errors. Only the requests and that translation differ; the
rest lives here once so that the three cannot drift apart.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, ClassVar, TypeVar

from fsspec.asyn import sync

from eleanor_cloud.backends.base import Capabilities, Version
from eleanor_cloud.backends.fsspec import split_root
from eleanor_cloud.errors import EleanorError, NotFound

__all__ = ["BucketStrategy"]

_T = TypeVar("_T")


class BucketStrategy(ABC):
    """A strategy over ``bucket[/prefix]`` of an async fsspec filesystem.

    Subclasses set ``_scheme`` (for the description), ``_errors`` (what their filesystem
    raises) and ``_lister`` (an ``async (fs, bucket, prefix) -> names``), and translate
    errors in ``_error``.
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

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities()

    def _name(self, key: str) -> str:
        return self._base + key

    @abstractmethod
    def _error(self, exc: BaseException, key: str, operation: str) -> EleanorError:
        """The eleanor_cloud error for ``exc``, raised by ``operation`` on ``key``."""

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

    def keys(self, prefix: str) -> Iterable[str]:
        names = self._run(prefix, "list", self._lister, self._base + prefix)
        cut = len(self._base)
        return [name[cut:] for name in names]
