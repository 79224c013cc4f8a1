"""The backend protocol: the narrow, bytes-only part that third parties implement.

A backend stores opaque bytes under string keys and offers four operations. Everything
else (envelopes, validation, conflict reconciliation) lives once in
:class:`eleanor_cloud.store.StateStore`.

Contract (checked by :mod:`eleanor_cloud.testing.conformance`):

``read(key) -> (bytes, Version)``
    ``NotFound`` if absent.
``write(key, data, mode) -> Version``
    ``mode`` is closed: :class:`Create` (only if absent, else ``AlreadyExists``),
    :class:`Replace` (only if the current version equals ``mode.version``, else
    ``Conflict``; a missing object is a ``Conflict`` too) or :class:`Overwrite`
    (unconditional). Returns the new version, so a caller never reads after its own
    write. A backend that cannot perform a mode atomically raises ``NotSupported``;
    it never emulates it with check-then-write.
``delete(key, if_version=None)``
    Unconditional delete of a missing key is a no-op. Conditional delete is optional
    (the library never issues one; object_store has none): a backend that cannot do it
    atomically raises ``NotSupported`` when given ``if_version``. One that can raises
    ``Conflict`` if the version differs and ``NotFound`` (or ``Conflict``) if absent.
``list(prefix, delimiter=None) -> Iterator[str]``
    Keys starting with ``prefix`` in lexicographic order. With ``delimiter="/"`` keys
    with a further ``/`` after the prefix are rolled up into one entry ending in
    ``/`` (S3's CommonPrefixes).

All failures are :class:`eleanor_cloud.errors.EleanorError` subclasses; transient ones
are ``Unavailable``. What a backend can do is not a flag it reports: the conformance
run declares it (``supports_conditional_delete``, ``shared_across_processes``) and
checks that an operation the backend cannot do raises ``NotSupported``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

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


@dataclass(frozen=True, slots=True)
class Version:
    """An opaque version token (an ETag, a generation, a counter, a content hash)."""

    token: str

    def to_replace(self) -> Replace:
        """The write mode that updates exactly this version: a write's result feeds the next."""
        return Replace(self)

    def __str__(self) -> str:
        return self.token


@dataclass(frozen=True, slots=True)
class Create:
    """Write only if no object exists at the key."""

    def __str__(self) -> str:
        return "create"


@dataclass(frozen=True, slots=True)
class Replace:
    """Write only if the object exists at exactly ``version`` (compare-and-swap)."""

    version: Version

    def __str__(self) -> str:
        return f"replace(if version={self.version.token})"


@dataclass(frozen=True, slots=True)
class Overwrite:
    """Write unconditionally. The store uses it only where a caller asks explicitly."""

    def __str__(self) -> str:
        return "overwrite"


WriteMode = Create | Replace | Overwrite
CREATE = Create()
OVERWRITE = Overwrite()


@runtime_checkable
class ObjectBackend(Protocol):
    """Bytes under keys, with conditional writes. See the module docstring for the contract."""

    @property
    def description(self) -> str:
        """Where the data lives, for error messages (``s3://bucket``, ``file:///dir``)."""
        ...

    def read(self, key: str) -> tuple[bytes, Version]:
        """Return the object's bytes and version; ``NotFound`` if absent."""
        ...

    def write(self, key: str, data: bytes, mode: WriteMode) -> Version:
        """Write ``data`` under ``mode``; return the new version."""
        ...

    def delete(self, key: str, if_version: Version | None = None) -> None:
        """Delete the object; with ``if_version`` only at that version (optional)."""
        ...

    def list(self, prefix: str, delimiter: str | None = None) -> Iterator[str]:
        """Keys (or rolled-up prefixes) under ``prefix``, in lexicographic order."""
        ...
