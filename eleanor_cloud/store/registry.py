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
    from importlib.metadata import entry_points  # only on the rare unknown-scheme path

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name.lower() == scheme:
            return BackendSpec(ep.value, f"the package providing {ep.name!r}")
    known = [*sorted({*_BUILTIN, *_registered}), "fsspec+<protocol>"]
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


def open_store(
    url: str | os.PathLike[str] | ObjectBackend,
    *,
    prefix: str | None = None,
    writer: str | None = None,
    clock: Clock = utc_now,
    max_workers: int = 8,
    **options: Any,
) -> StateStore:
    """Open a :class:`StateStore` from a URL, a path, or a backend instance.

    ``memory://`` (a fresh in-process store), ``file:///abs/dir`` or a plain path (the
    local-directory backend), ``s3://bucket/prefix`` (``eleanor-cloud[s3]``),
    ``gs://`` (``eleanor-cloud[gcs]``), ``az://``/``abfs://`` (``eleanor-cloud[azure]``),
    ``fsspec+<protocol>://`` (``eleanor-cloud[fsspec]``, ``[s3fs]`` for ``fsspec+s3``)
    and any scheme registered by a plug-in. ``options`` go to the backend (an injected
    boto3 ``client``, ``storage_options``...). ``prefix`` overrides the URL's path prefix.
    """
    if isinstance(url, ObjectBackend):
        if options:
            raise ConfigurationError(
                f"backend options {sorted(options)} cannot apply to a backend instance"
            )
        backend, url_prefix = url, ""
    else:
        text = os.fspath(url)
        if not isinstance(text, str) or not text:
            raise ConfigurationError(f"store URL must be a non-empty string, got {url!r}")
        factory = resolve(text)
        try:
            backend, url_prefix = factory(text, **options)
        except EleanorError:
            raise
        except TypeError as exc:
            raise ConfigurationError(
                f"bad option for store {text!r}: {exc}", operation="open_store"
            ) from exc
    return StateStore(
        backend,
        url_prefix if prefix is None else prefix,
        writer=writer,
        clock=clock,
        max_workers=max_workers,
    )
