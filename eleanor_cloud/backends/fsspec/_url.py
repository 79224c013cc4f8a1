"""Opening an fsspec backend from a store URL: which protocol, which filesystem, where."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eleanor_cloud.backends.fsspec._backend import FsspecBackend, is_bucketed
from eleanor_cloud.errors import ConfigurationError, MissingDependency

__all__ = ["from_url"]

# Plain URL schemes the registry routes here, and the fsspec protocol each one means.
_SCHEME_PROTOCOL = {"gs": "gs", "gcs": "gcs", "az": "az", "abfs": "abfs", "abfss": "abfss"}
# What to install when fsspec cannot import a protocol's implementation.
_INSTALL = {
    "s3": "eleanor-cloud[s3fs]",
    "s3a": "eleanor-cloud[s3fs]",
    "gs": "eleanor-cloud[gcs]",
    "gcs": "eleanor-cloud[gcs]",
    "az": "eleanor-cloud[azure]",
    "abfs": "eleanor-cloud[azure]",
    "abfss": "eleanor-cloud[azure]",
    "adl": "eleanor-cloud[azure]",
}


def _protocol_of(url: str) -> tuple[str, str]:
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigurationError(f"store URL {url!r} has no scheme", operation="open_store")
    scheme = scheme.lower()
    if scheme.startswith("fsspec+"):
        protocol = scheme[len("fsspec+") :]
        if not protocol:
            raise ConfigurationError(
                f"store URL {url!r} names no fsspec protocol after 'fsspec+'",
                operation="open_store",
            )
        return protocol, rest
    if scheme in _SCHEME_PROTOCOL:
        return _SCHEME_PROTOCOL[scheme], rest
    raise ConfigurationError(f"store URL {url!r} is not an fsspec URL", operation="open_store")


def _open_filesystem(
    protocol: str, inner: str, url: str, storage_options: Mapping[str, Any]
) -> tuple[Any, str]:
    # Imported here: `import eleanor_cloud` and other stores must not pay for fsspec.
    import fsspec.core

    try:
        fs, path = fsspec.core.url_to_fs(inner, **storage_options)
    except ImportError as exc:
        hint = _INSTALL.get(protocol, f"the fsspec implementation of {protocol!r}")
        raise MissingDependency(
            f"store URL {url!r} needs the {protocol!r} filesystem: pip install '{hint}' ({exc})",
            install=hint,
        ) from exc
    except ValueError as exc:
        raise ConfigurationError(f"store URL {url!r}: {exc}", operation="open_store") from exc
    except TypeError as exc:
        raise ConfigurationError(
            f"bad storage_options for {url!r}: {exc}", operation="open_store"
        ) from exc
    return fs, str(path)


def _given_filesystem(filesystem: Any, protocol: str, inner: str, url: str) -> tuple[Any, str]:
    protocols = (
        filesystem.protocol
        if isinstance(filesystem.protocol, (tuple, list))
        else (filesystem.protocol,)
    )
    if protocol not in protocols:
        raise ConfigurationError(
            f"store URL {url!r} names protocol {protocol!r} but the filesystem given is "
            f"{type(filesystem).__name__} ({', '.join(map(str, protocols))})",
            operation="open_store",
        )
    return filesystem, str(filesystem._strip_protocol(inner))


def from_url(
    url: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    filesystem: Any = None,
    unsafe_unconditional: bool = False,
) -> tuple[FsspecBackend, str]:
    """Open ``fsspec+<protocol>://...``, ``gs://``, ``az://``, ``abfs[s]://`` URLs.

    On object stores the first path segment is the bucket/container and the rest the
    key prefix (``fsspec+s3://bucket/checkpoints``); on local and memory filesystems the
    whole path is the directory. ``storage_options`` go to the fsspec filesystem
    (endpoint, credentials...); ``filesystem`` passes a ready instance instead.
    ``unsafe_unconditional=True`` opens filesystems without atomic conditional writes:
    UNSAFE with two writers (see the package docstring).
    """
    protocol, rest = _protocol_of(url)
    inner = f"{protocol}://{rest}"
    if filesystem is not None:
        if storage_options:
            raise ConfigurationError(
                "pass either storage_options or filesystem, not both", operation="open_store"
            )
        fs, path = _given_filesystem(filesystem, protocol, inner, url)
    else:
        if storage_options is not None and not isinstance(storage_options, Mapping):
            raise ConfigurationError(
                f"storage_options must be a mapping, got {type(storage_options).__name__}",
                operation="open_store",
            )
        fs, path = _open_filesystem(protocol, inner, url, storage_options or {})
    if is_bucketed(fs):
        bucket, _, prefix = path.strip("/").partition("/")
        if not bucket:
            raise ConfigurationError(
                f"store URL {url!r} names no bucket or container", operation="open_store"
            )
        root = bucket
    else:
        root, prefix = path, ""
    return FsspecBackend(fs, root, unsafe_unconditional=unsafe_unconditional), prefix
