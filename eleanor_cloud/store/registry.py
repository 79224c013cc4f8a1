"""Find a backend by URL scheme, importing it only when a store is opened.

Built-in schemes map to ``module:function`` paths plus an install hint. Third-party
packages add schemes through the entry-point group ``eleanor_cloud.backends``::

    [project.entry-points."eleanor_cloud.backends"]
    myproto = "my_package.eleanor:from_url"

A factory is called as ``factory(url, **options)`` and returns ``(backend, prefix)``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eleanor_cloud.backends.base import ObjectBackend
from eleanor_cloud.clock import Clock, utc_now
from eleanor_cloud.errors import ConfigurationError, EleanorError, MissingDependency
from eleanor_cloud.store.state_store import StateStore

__all__ = ["ENTRY_POINT_GROUP", "BackendSpec", "open_store", "register_backend", "resolve"]

ENTRY_POINT_GROUP = "eleanor_cloud.backends"
BackendFactory = Callable[..., tuple[ObjectBackend, str]]


@dataclass(frozen=True, slots=True)
class BackendSpec:
    """Where a scheme's factory lives and what to install if it cannot be imported."""

    target: str
    install: str | None = None
    # Top-level modules whose absence means "install the extra", not "a bug".
    requires: tuple[str, ...] = ()


_FSSPEC = BackendSpec(
    "eleanor_cloud.backends.fsspec:from_url", "eleanor-cloud[fsspec]", ("fsspec",)
)
# obstore (Rust's object_store): ``obstore+s3``, ``obstore+gs``, ``obstore+az``,
# ``obstore+file``, ``obstore+memory``...; the backend module checks the exact scheme.
_OBSTORE = BackendSpec(
    "eleanor_cloud.backends.obstore:from_url", "eleanor-cloud[obstore]", ("obstore",)
)
# ``open_store(url, backend=...)``: which implementation serves a URL's scheme.
# None keeps the scheme's built-in choice (boto3 for s3://, fsspec's for gs:// and az://).
_IMPLEMENTATIONS = ("obstore", "fsspec", "boto3")
_OBSTORE_SCHEMES = frozenset(
    {"s3", "s3a", "gs", "gcs", "az", "azure", "abfs", "abfss", "file", "memory"}
)
_BUILTIN: dict[str, BackendSpec] = {
    "memory": BackendSpec("eleanor_cloud.backends.memory:from_url"),
    "file": BackendSpec("eleanor_cloud.backends.local:from_url"),
    "s3": BackendSpec(
        "eleanor_cloud.backends.s3:from_url", "eleanor-cloud[s3]", ("boto3", "botocore")
    ),
    "gs": BackendSpec(_FSSPEC.target, "eleanor-cloud[gcs]", ("fsspec", "gcsfs")),
    "gcs": BackendSpec(_FSSPEC.target, "eleanor-cloud[gcs]", ("fsspec", "gcsfs")),
    "az": BackendSpec(_FSSPEC.target, "eleanor-cloud[azure]", ("fsspec", "adlfs")),
    "abfs": BackendSpec(_FSSPEC.target, "eleanor-cloud[azure]", ("fsspec", "adlfs")),
    "abfss": BackendSpec(_FSSPEC.target, "eleanor-cloud[azure]", ("fsspec", "adlfs")),
}
# Explicit registrations made by this process (tests, plug-ins without packaging).
_registered: dict[str, BackendSpec] = {}


def register_backend(
    scheme: str, target: str, *, install: str | None = None, requires: tuple[str, ...] = ()
) -> None:
    """Map ``scheme`` to a ``module:function`` factory, overriding built-ins."""
    if not scheme or "://" in scheme:
        raise ConfigurationError(f"invalid scheme {scheme!r}: give the bare name, e.g. 'myfs'")
    _registered[scheme.lower()] = BackendSpec(target, install, requires)


def _split(url: str) -> tuple[str, str]:
    if "://" not in url:
        return "file", url
    scheme, _, rest = url.partition("://")
    return scheme.lower(), rest


def _spec_for(scheme: str, url: str) -> BackendSpec:
    if scheme in _registered:
        return _registered[scheme]
    if scheme in _BUILTIN:
        return _BUILTIN[scheme]
    if scheme.startswith("fsspec+"):
        return _FSSPEC
    if scheme.startswith("obstore+"):
        return _OBSTORE
    from importlib.metadata import entry_points  # only on the rare unknown-scheme path

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name.lower() == scheme:
            return BackendSpec(ep.value, f"the package providing {ep.name!r}")
    known = [
        *sorted({*_BUILTIN, *_registered}),
        "fsspec+<protocol>",
        "obstore+<s3|gs|az|file|memory>",
    ]
    raise ConfigurationError(
        f"unknown store URL scheme {scheme!r} in {url!r}; known schemes: {', '.join(known)}"
        f" (third-party backends register the entry-point group {ENTRY_POINT_GROUP!r})",
        operation="open_store",
    )


def resolve(url: str) -> BackendFactory:
    """Import and return the factory for ``url``'s scheme (with a clear install hint)."""
    scheme, _ = _split(url)
    spec = _spec_for(scheme, url)
    module_name, _, attr = spec.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing in spec.requires or (spec.install and missing != "eleanor_cloud"):
            hint = spec.install or missing
            raise MissingDependency(
                f"store URL {url!r} needs the {missing!r} package: pip install '{hint}'",
                install=hint,
            ) from exc
        raise
    try:
        factory: BackendFactory = getattr(module, attr)
    except AttributeError as exc:
        raise ConfigurationError(
            f"backend {spec.target!r} for scheme {scheme!r} has no {attr!r}"
        ) from exc
    return factory


def _with_implementation(url: str, backend: str) -> str:
    """``url`` spelled so that ``backend`` serves it (``s3://b/p`` -> ``obstore+s3://b/p``)."""
    if backend not in _IMPLEMENTATIONS:
        raise ConfigurationError(
            f"backend must be one of {', '.join(_IMPLEMENTATIONS)} (or None), got {backend!r}",
            operation="open_store",
        )
    if "://" not in url:  # a plain path is the local directory
        if backend != "obstore":
            raise ConfigurationError(
                f"backend={backend!r} cannot serve the local path {url!r}", operation="open_store"
            )
        return f"obstore+file://{os.path.abspath(url)}"
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    chosen = scheme.partition("+")[0] if "+" in scheme else None
    if chosen == backend:
        return url
    if chosen is not None or (backend == "boto3" and scheme != "s3"):
        raise ConfigurationError(
            f"backend={backend!r} cannot serve {url!r}", operation="open_store"
        )
    if backend == "boto3":
        return url
    if backend == "obstore" and scheme not in _OBSTORE_SCHEMES:
        raise ConfigurationError(
            f"backend='obstore' serves s3://, gs://, az://, file:// and memory:// URLs, "
            f"not {url!r}",
            operation="open_store",
        )
    return f"{backend}+{scheme}://{rest}"


def open_store(
    url: str | os.PathLike[str] | ObjectBackend,
    *,
    prefix: str | None = None,
    writer: str | None = None,
    clock: Clock = utc_now,
    max_workers: int = 8,
    backend: str | None = None,
    **options: Any,
) -> StateStore:
    """Open a :class:`StateStore` from a URL, a path, or a backend instance.

    ``memory://`` (a fresh in-process store), ``file:///abs/dir`` or a plain path (the
    local-directory backend), ``s3://bucket/prefix`` (``eleanor-cloud[s3]``),
    ``gs://`` (``eleanor-cloud[gcs]``), ``az://``/``abfs://`` (``eleanor-cloud[azure]``),
    ``fsspec+<protocol>://`` (``eleanor-cloud[fsspec]``, ``[s3fs]`` for ``fsspec+s3``)
    and any scheme registered by a plug-in. ``obstore+s3://``, ``obstore+gs://``,
    ``obstore+az://``, ``obstore+file://`` and ``obstore+memory://`` use obstore
    (``eleanor-cloud[obstore]``); ``backend="obstore"`` picks it for a plain URL or path
    (``"fsspec"`` and ``"boto3"`` likewise). ``options`` go to the backend (an injected
    boto3 ``client``, ``storage_options``...). ``prefix`` overrides the URL's path prefix.
    """
    if isinstance(url, ObjectBackend):
        if options or backend is not None:
            given = sorted([*options, *(["backend"] if backend is not None else [])])
            raise ConfigurationError(f"backend options {given} cannot apply to a backend instance")
        opened, url_prefix = url, ""
    else:
        text = os.fspath(url)
        if not isinstance(text, str) or not text:
            raise ConfigurationError(f"store URL must be a non-empty string, got {url!r}")
        if backend is not None:
            text = _with_implementation(text, backend)
        factory = resolve(text)
        try:
            opened, url_prefix = factory(text, **options)
        except EleanorError:
            raise
        except TypeError as exc:
            raise ConfigurationError(
                f"bad option for store {text!r}: {exc}", operation="open_store"
            ) from exc
    return StateStore(
        opened,
        url_prefix if prefix is None else prefix,
        writer=writer,
        clock=clock,
        max_workers=max_workers,
    )
