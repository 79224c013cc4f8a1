"""fsspec's LocalFileSystem: the local-directory backend itself (link, flock, replace),
never fsspec's check-then-write ``pipe_file(mode="create")``."""

from __future__ import annotations

from typing import Any

from eleanor_cloud.backends.local import LocalBackend

__all__ = ["LocalFilesystemBackend"]


class LocalFilesystemBackend(LocalBackend):
    """:class:`LocalBackend` at the directory an fsspec local path names."""

    def __init__(self, fs: Any, root: str) -> None:
        super().__init__(fs._strip_protocol(root) or "/")

    @property
    def description(self) -> str:
        # Says which door the store was opened through, in every error message.
        return f"fsspec+{super().description}"
