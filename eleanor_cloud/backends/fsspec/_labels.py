"""How messages name an fsspec filesystem: its class and its primary protocol."""

from __future__ import annotations

__all__ = ["filesystem_label", "primary_protocol"]


def primary_protocol(fs: object) -> str:
    """``"s3"`` for s3fs: the first of the protocols a filesystem class answers to."""
    protocol = getattr(fs, "protocol", "")
    if isinstance(protocol, (tuple, list)):
        return str(protocol[0]) if protocol else ""
    return str(protocol)


def filesystem_label(fs: object) -> str:
    """``fsspec filesystem DirFileSystem (protocol 'dir')``, for errors and warnings."""
    return f"fsspec filesystem {type(fs).__name__} (protocol {primary_protocol(fs)!r})"
