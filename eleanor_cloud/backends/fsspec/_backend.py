"""fsspec backend: conditional writes on the fsspec filesystems that can do them atomically.

``open_store("fsspec+<protocol>://...", storage_options={...})``, ``gs://``, ``gcs://``,
``az://``, ``abfs://``, ``abfss://`` URLs, or ``open_store(url, filesystem=fs)`` with a
filesystem you built, all land here. fsspec's own API has no compare-and-swap and its
``pipe_file(mode="create")`` is check-then-write on several filesystems, so each
filesystem eleanor_cloud trusts gets a small *strategy* that speaks its service's
preconditions directly (chosen by the filesystem's class, subclasses included):

=================  ==========================  ===============================  ==========
filesystem         create-if-absent            compare-and-swap                 version
=================  ==========================  ===============================  ==========
s3fs               PUT ``If-None-Match: *``    PUT ``If-Match: <etag>``         ETag
gcsfs              ``ifGenerationMatch=0``     ``ifGenerationMatch=<gen>``      generation
adlfs              ``mode="create"``           ``etag`` + ``IfNotModified``     ETag
LocalFileSystem    :class:`LocalBackend`       :class:`LocalBackend`            content hash
MemoryFileSystem   a process-wide lock         a process-wide lock              content hash
=================  ==========================  ===============================  ==========

Any other filesystem raises :class:`~eleanor_cloud.errors.NotSupported` when opened.
``unsafe_unconditional=True`` opens it anyway with best-effort, *non-atomic* checks:
correct for one writer at a time, UNSAFE with two (both can win a create; a
compare-and-swap can lose an update). Such a backend warns with
:class:`UnsafeBackendWarning`, says ``UNSAFE`` in its description and reports no atomic
capability.

The policy (envelopes, reconciliation, caching) stays in :class:`StateStore`; this
module only maps the four backend operations onto each filesystem.
"""

from __future__ import annotations

import importlib
import threading
import warnings
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Protocol

from eleanor_cloud.backends.base import (
    Capabilities,
    Create,
    Overwrite,
    Replace,
    Version,
    WriteMode,
)
from eleanor_cloud.backends.listing import roll_up
from eleanor_cloud.backends.local import LocalBackend, content_version
from eleanor_cloud.errors import (
    AccessDenied,
    AlreadyExists,
    BackendError,
    ConfigurationError,
    Conflict,
    InvalidKey,
    MissingDependency,
    NotFound,
    NotSupported,
)

__all__ = [
    "FsspecBackend",
    "Strategy",
    "UnsafeBackendWarning",
    "from_url",
    "split_root",
    "strategy_for",
]

# Conditional writes this module knows per filesystem class (``module.qualname``), and
# whether the first path segment is a bucket/container (then the rest is a key prefix).
_STRATEGIES: dict[str, tuple[str, bool]] = {
    "s3fs.core.S3FileSystem": ("eleanor_cloud.backends.fsspec_s3:S3Strategy", True),
    "gcsfs.core.GCSFileSystem": ("eleanor_cloud.backends.fsspec_gcs:GCSStrategy", True),
    "adlfs.spec.AzureBlobFileSystem": ("eleanor_cloud.backends.fsspec_azure:AzureStrategy", True),
    "fsspec.implementations.local.LocalFileSystem": (
        "eleanor_cloud.backends.fsspec:LocalStrategy",
        False,
    ),
    "fsspec.implementations.memory.MemoryFileSystem": (
        "eleanor_cloud.backends.fsspec:MemoryStrategy",
        False,
    ),
}
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


class UnsafeBackendWarning(UserWarning):
    """A backend was opened with ``unsafe_unconditional=True``: two writers can collide."""


class Strategy(Protocol):
    """How one filesystem performs the backend operations, each atomically.

    Keys are already validated, relative to the backend's root. ``keys(prefix)`` yields
    every object key starting with ``prefix`` (any order; the backend sorts).
    """

    @property
    def description(self) -> str: ...

    @property
    def capabilities(self) -> Capabilities: ...

    def read(self, key: str) -> tuple[bytes, Version]: ...

    def create(self, key: str, data: bytes) -> Version: ...

    def replace(self, key: str, data: bytes, expected: Version) -> Version: ...

    def overwrite(self, key: str, data: bytes) -> Version: ...

    def delete(self, key: str, if_version: Version | None) -> None: ...

    def keys(self, prefix: str) -> Iterable[str]: ...


def _class_names(fs: object) -> list[str]:
    return [f"{cls.__module__}.{cls.__qualname__}" for cls in type(fs).__mro__]


def _known(fs: object) -> tuple[str, bool] | None:
    for name in _class_names(fs):
        if name in _STRATEGIES:
            return _STRATEGIES[name]
    return None


def _primary_protocol(fs: object) -> str:
    protocol = getattr(fs, "protocol", "")
    if isinstance(protocol, (tuple, list)):
        return str(protocol[0]) if protocol else ""
    return str(protocol)


def _fs_label(fs: object) -> str:
    return f"fsspec filesystem {type(fs).__name__} (protocol {_primary_protocol(fs)!r})"


def strategy_for(fs: Any, root: str, *, unsafe_unconditional: bool = False) -> Strategy:
    """The strategy for ``fs`` rooted at ``root`` (``bucket[/path]`` or a directory).

    Raises ``NotSupported`` naming the filesystem and what it lacks when eleanor_cloud
    knows no atomic conditional writes for it, unless ``unsafe_unconditional``.
    """
    known = _known(fs)
    if known is None:
        if not unsafe_unconditional:
            raise NotSupported(
                "create-if-absent, compare-and-swap and conditional delete",
                _fs_label(fs),
                detail="eleanor_cloud performs conditional writes only on s3fs, gcsfs, "
                "adlfs, LocalFileSystem and MemoryFileSystem (fsspec itself has no "
                "compare-and-swap). Use one of those, or pass unsafe_unconditional=True "
                "to write without preconditions (UNSAFE with two writers)",
            )
        return UnsafeStrategy(fs, root)
    module_name, _, class_name = known[0].partition(":")
    module = importlib.import_module(module_name)
    strategy: Strategy = getattr(module, class_name)(fs, root)
    return strategy


def split_root(fs: Any, root: str) -> tuple[str, str]:
    """``"bucket/dir"`` -> ``("bucket", "dir/")``; ``"bucket"`` -> ``("bucket", "")``.

    For the strategies of bucketed object stores. Refuses a filesystem opened with
    ``asynchronous=True``: the strategies drive the filesystem's own event loop.
    """
    if getattr(fs, "asynchronous", False):
        raise ConfigurationError(
            f"{_fs_label(fs)} was created with asynchronous=True; pass a synchronous "
            "instance (the default)",
            operation="open_store",
        )
    bucket, _, base = fs._strip_protocol(root).strip("/").partition("/")
    if not bucket:
        raise ConfigurationError(
            f"fsspec backend root {root!r} names no bucket or container", operation="open_store"
        )
    return bucket, f"{base.strip('/')}/" if base.strip("/") else ""


def _check_key(key: object) -> str:
    if not isinstance(key, str) or not key:
        raise InvalidKey(key, "must be a non-empty str", field="key")
    if "\x00" in key or key.startswith("/") or key.endswith("/"):
        raise InvalidKey(key, "is not a relative path of plain segments", field="key")
    for part in key.split("/"):
        if part in ("", ".", ".."):
            raise InvalidKey(key, "is not a relative path of plain segments", field="key")
    return key


def _check_prefix(prefix: object) -> str:
    if not isinstance(prefix, str):
        raise InvalidKey(prefix, "must be a str", field="prefix")
    if "\x00" in prefix or prefix.startswith("/") or "//" in prefix:
        raise InvalidKey(prefix, "is not a relative path of plain segments", field="prefix")
    if any(part in (".", "..") for part in prefix.split("/")[:-1]):
        raise InvalidKey(prefix, "must not contain '.' or '..' segments", field="prefix")
    return prefix


class FsspecBackend:
    """An :class:`~eleanor_cloud.backends.base.ObjectBackend` over an fsspec filesystem.

    ``root`` is where the keys live inside ``fs``: ``"bucket"`` or ``"bucket/dir"`` on
    object stores, a directory on local and memory filesystems. The filesystem's class
    picks the strategy (see the module docstring); an unknown one raises
    ``NotSupported`` unless ``unsafe_unconditional=True``, which is unsafe with two
    writers and warns with :class:`UnsafeBackendWarning`.
    """

    def __init__(self, fs: Any, root: str, *, unsafe_unconditional: bool = False) -> None:
        if not isinstance(root, str):
            raise ConfigurationError(
                f"fsspec backend root must be a str, got {root!r}", operation="open_store"
            )
        self.fs = fs
        self._strategy = strategy_for(fs, root, unsafe_unconditional=unsafe_unconditional)
        self.unsafe = isinstance(self._strategy, UnsafeStrategy)
        if self.unsafe:
            warnings.warn(
                f"{self._strategy.description}: opened with unsafe_unconditional=True; "
                "writes are not atomic, so two concurrent writers can both win a create "
                "or lose an update",
                UnsafeBackendWarning,
                stacklevel=2,
            )

    def __repr__(self) -> str:
        return f"FsspecBackend({self.description})"

    @property
    def strategy(self) -> Strategy:
        """The per-filesystem strategy doing the conditional operations."""
        return self._strategy

    @property
    def description(self) -> str:
        return self._strategy.description

    @property
    def capabilities(self) -> Capabilities:
        return self._strategy.capabilities

    def read(self, key: str) -> tuple[bytes, Version]:
        return self._strategy.read(_check_key(key))

    def write(self, key: str, data: bytes, mode: WriteMode) -> Version:
        _check_key(key)
        data = bytes(data)
        match mode:
            case Create():
                return self._strategy.create(key, data)
            case Replace(version=expected):
                return self._strategy.replace(key, data, expected)
            case Overwrite():
                return self._strategy.overwrite(key, data)
        raise TypeError(f"unknown write mode {mode!r}")  # pragma: no cover - closed type

    def delete(self, key: str, if_version: Version | None = None) -> None:
        self._strategy.delete(_check_key(key), if_version)

    def list(self, prefix: str, delimiter: str | None = None) -> Iterator[str]:
        _check_prefix(prefix)
        keys = sorted(
            k for k in self._strategy.keys(prefix) if k.startswith(prefix) and not k.endswith("/")
        )
        return roll_up(keys, prefix, delimiter)


# -- local and memory: atomic by our own means, never fsspec's check-then-write ----------


def _check_version(
    description: str, key: str, current: bytes | None, expected: Version | None, operation: str
) -> None:
    """Refuse a replace or conditional delete of ``current`` (``None``: absent) unless it
    is at ``expected`` (``None``: unconditional), for the strategies that version by
    content hash and check before they write. A missing object fails a replace with
    ``Conflict`` but a delete with ``NotFound``, as on every backend.
    """
    if expected is None:
        return
    if current is None and operation == "delete":
        raise NotFound(f"{description}: no object at {key!r}", key=key, operation=operation)
    if current is None or content_version(current) != expected:
        raise Conflict(
            f"{description}: {key!r} is not at version {expected.token}",
            key=key,
            operation=operation,
        )


class LocalStrategy:
    """fsspec's LocalFileSystem: delegate to :class:`LocalBackend` (link/flock/replace)."""

    def __init__(self, fs: Any, root: str) -> None:
        self._path = fs._strip_protocol(root) or "/"
        self._local = LocalBackend(self._path)

    @property
    def description(self) -> str:
        return f"fsspec+{self._local.description}"

    @property
    def capabilities(self) -> Capabilities:
        return self._local.capabilities

    def read(self, key: str) -> tuple[bytes, Version]:
        return self._local.read(key)

    def create(self, key: str, data: bytes) -> Version:
        return self._local.write(key, data, Create())

    def replace(self, key: str, data: bytes, expected: Version) -> Version:
        return self._local.write(key, data, Replace(expected))

    def overwrite(self, key: str, data: bytes) -> Version:
        return self._local.write(key, data, Overwrite())

    def delete(self, key: str, if_version: Version | None) -> None:
        self._local.delete(key, if_version)

    def keys(self, prefix: str) -> Iterable[str]:
        return self._local.list(prefix)


# One lock for every MemoryFileSystem store in the process: each check and its write
# happen under it, which fsspec's own pipe_file(mode="create") does not do.
_MEMORY_LOCK = threading.Lock()


class MemoryStrategy:
    """fsspec's MemoryFileSystem (process-local): every operation under one lock.

    Objects land in the filesystem's own store, so ``fs.cat`` sees them. The version is
    a content hash, as on the local backend (the store makes every body unique).
    """

    def __init__(self, fs: Any, root: str) -> None:
        self._fs = fs
        self._root = fs._strip_protocol(root).rstrip("/")

    @property
    def description(self) -> str:
        return f"fsspec+memory://{self._root}"

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(shared_across_processes=False)

    def _path(self, key: str) -> str:
        return f"{self._root}/{key}"

    def _current(self, path: str) -> bytes | None:
        if path not in self._fs.store:
            return None
        return bytes(self._fs.cat_file(path))

    def read(self, key: str) -> tuple[bytes, Version]:
        with _MEMORY_LOCK:
            data = self._current(self._path(key))
        if data is None:
            raise NotFound(f"{self.description}: no object at {key!r}", key=key, operation="read")
        return data, content_version(data)

    def _put(self, path: str, data: bytes) -> Version:
        self._fs.pipe_file(path, data)
        return content_version(data)

    def create(self, key: str, data: bytes) -> Version:
        path = self._path(key)
        with _MEMORY_LOCK:
            if path in self._fs.store:
                raise AlreadyExists(
                    f"{self.description}: {key!r} already exists", key=key, operation="create"
                )
            return self._put(path, data)

    def replace(self, key: str, data: bytes, expected: Version) -> Version:
        path = self._path(key)
        with _MEMORY_LOCK:
            _check_version(self.description, key, self._current(path), expected, "replace")
            return self._put(path, data)

    def overwrite(self, key: str, data: bytes) -> Version:
        with _MEMORY_LOCK:
            return self._put(self._path(key), data)

    def delete(self, key: str, if_version: Version | None) -> None:
        path = self._path(key)
        with _MEMORY_LOCK:
            current = self._current(path)
            _check_version(self.description, key, current, if_version, "delete")
            if current is not None:
                self._fs.rm_file(path)

    def keys(self, prefix: str) -> Iterable[str]:
        start = self._path(prefix)
        cut = len(self._root) + 1
        with _MEMORY_LOCK:
            return [path[cut:] for path in list(self._fs.store) if path.startswith(start)]


# -- anything else: only on explicit, labelled request ---------------------------------


class UnsafeStrategy:
    """Best-effort checks then unconditional writes, for one writer at a time ONLY.

    Used only with ``unsafe_unconditional=True``. The check and the write are two
    requests, so two writers can both create, and a compare-and-swap can overwrite a
    write made in between. The version is a content hash.
    """

    def __init__(self, fs: Any, root: str) -> None:
        self._fs = fs
        self._root = fs._strip_protocol(root).rstrip("/")
        self._label = _fs_label(fs)

    @property
    def description(self) -> str:
        return (
            f"fsspec+{_primary_protocol(self._fs)}://{self._root.lstrip('/')} "
            "(UNSAFE: unconditional writes)"
        )

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(create=False, replace=False, conditional_delete=False)

    def _path(self, key: str) -> str:
        return f"{self._root}/{key}" if self._root else key

    def _fail(self, exc: OSError, key: str, operation: str) -> Exception:
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

    def _current(self, key: str) -> bytes | None:
        try:
            return bytes(self._fs.cat_file(self._path(key)))
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        except OSError as exc:
            raise self._fail(exc, key, "read") from exc

    def read(self, key: str) -> tuple[bytes, Version]:
        data = self._current(key)
        if data is None:
            raise NotFound(f"{self.description}: no object at {key!r}", key=key, operation="read")
        return data, content_version(data)

    def _put(self, key: str, data: bytes, operation: str) -> Version:
        path = self._path(key)
        try:
            self._fs.makedirs(self._fs._parent(path), exist_ok=True)
            self._fs.pipe_file(path, data)
        except OSError as exc:
            raise self._fail(exc, key, operation) from exc
        return content_version(data)

    def create(self, key: str, data: bytes) -> Version:
        if self._current(key) is not None:
            raise AlreadyExists(
                f"{self.description}: {key!r} already exists", key=key, operation="create"
            )
        return self._put(key, data, "create")

    def replace(self, key: str, data: bytes, expected: Version) -> Version:
        _check_version(self.description, key, self._current(key), expected, "replace")
        return self._put(key, data, "replace")

    def overwrite(self, key: str, data: bytes) -> Version:
        return self._put(key, data, "overwrite")

    def delete(self, key: str, if_version: Version | None) -> None:
        current = self._current(key)
        _check_version(self.description, key, current, if_version, "delete")
        if current is not None:
            try:
                self._fs.rm_file(self._path(key))
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise self._fail(exc, key, "delete") from exc

    def keys(self, prefix: str) -> Iterable[str]:
        base = self._path(prefix).rpartition("/")[0] or self._root
        cut = len(self._root) + 1 if self._root else 0
        self._fs.invalidate_cache()  # listings are cached by many filesystems
        try:
            found = self._fs.find(base, withdirs=False, detail=False)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise self._fail(exc, prefix, "list") from exc
        return [self._fs._strip_protocol(p)[cut:] for p in found]


# -- opening from a URL ----------------------------------------------------------------


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
    UNSAFE with two writers (see the module docstring).
    """
    protocol, rest = _protocol_of(url)
    inner = f"{protocol}://{rest}"
    if filesystem is not None:
        if storage_options:
            raise ConfigurationError(
                "pass either storage_options or filesystem, not both", operation="open_store"
            )
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
        fs, path = filesystem, filesystem._strip_protocol(inner)
    else:
        if storage_options is not None and not isinstance(storage_options, Mapping):
            raise ConfigurationError(
                f"storage_options must be a mapping, got {type(storage_options).__name__}",
                operation="open_store",
            )
        fs, path = _open_filesystem(protocol, inner, url, storage_options or {})
    known = _known(fs)
    bucketed = known[1] if known is not None else False
    path = str(path)
    if bucketed:
        bucket, _, prefix = path.strip("/").partition("/")
        if not bucket:
            raise ConfigurationError(
                f"store URL {url!r} names no bucket or container", operation="open_store"
            )
        root = bucket
    else:
        root, prefix = path, ""
    return FsspecBackend(fs, root, unsafe_unconditional=unsafe_unconditional), prefix
