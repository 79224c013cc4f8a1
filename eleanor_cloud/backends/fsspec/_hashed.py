"""Content-hash versions, for the filesystems whose objects carry no version of their own
(fsspec's memory filesystem, and any filesystem opened unsafely).

The version of a body is :func:`~eleanor_cloud.backends.local.content_version`, as on
the local backend: the state store makes every body unique (``write_id``), so a hash of
the content is a true version for it.
"""

from __future__ import annotations

from eleanor_cloud.backends.base import Version
from eleanor_cloud.backends.local import content_version
from eleanor_cloud.errors import Conflict, NotFound

__all__ = ["content_version", "require_version"]


def require_version(
    description: str, key: str, current: bytes | None, expected: Version, operation: str
) -> None:
    """Refuse ``operation`` on ``current`` (``None``: absent) unless it is at ``expected``.

    A missing object fails a replace with ``Conflict`` but a delete with ``NotFound``,
    as on every backend.
    """
    if current is None and operation == "delete":
        raise NotFound(f"{description}: no object at {key!r}", key=key, operation=operation)
    if current is None or content_version(current) != expected:
        raise Conflict(
            f"{description}: {key!r} is not at version {expected.token}",
            key=key,
            operation=operation,
        )
