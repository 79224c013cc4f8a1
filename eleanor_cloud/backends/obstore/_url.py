"""Store URLs for the obstore backend: what ``open_store`` calls for ``obstore+...``.

``obstore+s3://bucket/prefix``, ``obstore+gs://bucket/prefix`` (or ``obstore+gcs``),
``obstore+az://container/prefix`` (or ``obstore+azure``/``obstore+abfs[s]``),
``obstore+file:///abs/dir`` and ``obstore+memory://``; ``open_store(url,
backend="obstore")`` turns ``s3://``, ``gs://``, ``az://`` and paths into these.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote, urlsplit

from obstore import exceptions as obx
from obstore.store import AzureStore, GCSStore, LocalStore, MemoryStore, S3Store

from eleanor_cloud.backends.obstore._backend import DEFAULT_CONFLICT_RETRIES, ObstoreBackend
from eleanor_cloud.backends.obstore._options import (
    azure_endpoint,
    client_options,
    gcs_endpoint,
    mapping,
    retry_config,
    s3_endpoint,
)
from eleanor_cloud.errors import ConfigurationError

if TYPE_CHECKING:
    from obstore.store import (
        AzureConfig,
        ClientConfig,
        GCSConfig,
        RetryConfig,
        S3Config,
    )

__all__ = ["SCHEMES", "from_url"]

_S3, _GCS, _AZURE, _FILE, _MEMORY = "s3", "gs", "az", "file", "memory"
SCHEMES: dict[str, str] = {
    "obstore+s3": _S3,
    "obstore+s3a": _S3,
    "obstore+gs": _GCS,
    "obstore+gcs": _GCS,
    "obstore+az": _AZURE,
    "obstore+azure": _AZURE,
    "obstore+abfs": _AZURE,
    "obstore+abfss": _AZURE,
    "obstore+file": _FILE,
    "obstore+memory": _MEMORY,
}
# Options that only mean something for some stores: refused elsewhere, not ignored.
_ONLY_FOR = {
    "region_name": (_S3,),
    "session": (_S3,),
    "account_name": (_AZURE,),
    "endpoint_url": (_S3, _GCS, _AZURE),
    "config": (_S3, _GCS, _AZURE),
    "client_options": (_S3, _GCS, _AZURE),
    "retry_config": (_S3, _GCS, _AZURE),
    "credential_provider": (_S3, _GCS, _AZURE),
}


def _refuse(url: str, message: str) -> ConfigurationError:
    return ConfigurationError(f"store URL {url!r}: {message}", operation="open_store")


def from_url(
    url: str,
    *,
    store: Any = None,
    config: Mapping[str, Any] | None = None,
    client_options: Mapping[str, Any] | None = None,
    retry_config: Mapping[str, Any] | None = None,
    credential_provider: Any = None,
    endpoint_url: str | None = None,
    region_name: str | None = None,
    session: Any = None,
    account_name: str | None = None,
    conflict_retries: int = DEFAULT_CONFLICT_RETRIES,
    unsafe_unconditional: bool = False,
) -> tuple[ObstoreBackend, str]:
    """``obstore+<scheme>://bucket/prefix`` -> ``(ObstoreBackend, prefix)``.

    ``config`` is obstore's store configuration (``S3Config``/``GCSConfig``/
    ``AzureConfig`` keys); ``client_options`` and ``retry_config`` are merged over this
    library's time bounds (each key of yours wins); ``credential_provider`` goes to the
    store. The boto3-style ``endpoint_url``, ``region_name`` and ``session`` (a
    ``boto3.Session``, for profiles and SSO: obstore reads no ``~/.aws`` files) make
    ``backend="obstore"`` a drop-in for ``s3://`` options. An explicit argument beats
    ``config``, which beats the environment obstore reads (``AWS_ENDPOINT_URL_S3``,
    ``AWS_REGION``, ``GOOGLE_BASE_URL``, ``AZURE_STORAGE_ACCOUNT_NAME``...). ``store``
    is an obstore store you built, used as is (exclusive with the rest). Opening makes
    no request.
    """
    scheme_text, sep, rest = url.partition("://")
    scheme = scheme_text.lower()
    if not sep or scheme not in SCHEMES:
        raise _refuse(url, f"not an obstore URL (expected one of {', '.join(SCHEMES)}://...)")
    kind = SCHEMES[scheme]
    if "?" in rest or "#" in rest:
        raise _refuse(url, "must not have a query or fragment; pass options as keyword arguments")
    given = {
        name: value
        for name, value in {
            "config": config,
            "client_options": client_options,
            "retry_config": retry_config,
            "credential_provider": credential_provider,
            "endpoint_url": endpoint_url,
            "region_name": region_name,
            "session": session,
            "account_name": account_name,
        }.items()
        if value is not None
    }
    wrong = sorted(name for name in given if kind not in _ONLY_FOR[name])
    if wrong:
        raise _refuse(url, f"option(s) {', '.join(wrong)} do not apply to this store")
    options: dict[str, Any] = {
        "conflict_retries": conflict_retries,
        "unsafe_unconditional": unsafe_unconditional,
    }
    if kind in (_FILE, _MEMORY):
        return _local_or_memory(url, kind, rest, store, options)
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise _refuse(url, f"names no {'container' if kind == _AZURE else 'bucket'}")
    if store is not None:
        if given:
            raise _refuse(
                url,
                f"pass either store= or {', '.join(sorted(given))}=, not both: an injected "
                "store is used as is",
            )
        backend = ObstoreBackend(store, probe_prefix=prefix, **options)
        if backend.bucket != bucket:
            raise _refuse(url, f"the injected store is for {backend.bucket!r}, not {bucket!r}")
        return backend, prefix
    built, endpoint = _build(url, kind, bucket, given)
    return ObstoreBackend(built, endpoint=endpoint, probe_prefix=prefix, **options), prefix


def _local_or_memory(
    url: str, kind: str, rest: str, store: Any, options: dict[str, Any]
) -> tuple[ObstoreBackend, str]:
    if kind == _MEMORY:
        return ObstoreBackend(store if store is not None else MemoryStore(), **options), ""
    parts = urlsplit(f"file://{rest}")
    if parts.netloc not in ("", "localhost"):
        raise _refuse(url, f"names host {parts.netloc!r}; use obstore+file:///absolute/path")
    path = unquote(parts.path)
    if not path:
        raise _refuse(url, "names no directory")
    if store is None:
        root = Path(path).expanduser().absolute()
        # LocalStore needs its directory to exist; creating it is what the first write
        # would do anyway.
        store = LocalStore(root, mkdir=True)
    return ObstoreBackend(store, **options), ""


def _build(url: str, kind: str, bucket: str, given: dict[str, Any]) -> tuple[Any, str | None]:
    """The obstore store for ``bucket`` and the endpoint it sends to (``None``: the
    provider's own)."""
    config = mapping("config", given.get("config"))
    explicit = given.get("endpoint_url")
    if explicit is not None and not isinstance(explicit, str):
        raise _refuse(url, f"endpoint_url must be a str, got {explicit!r}")
    provider = given.get("credential_provider")
    if kind == _S3:
        if "region_name" in given:
            config["region"] = given["region_name"]
        if explicit:
            # obstore prefers aws_endpoint_url_s3 (AWS_ENDPOINT_URL_S3) over endpoint, so
            # the explicit argument goes there to beat the environment.
            config["aws_endpoint_url_s3"] = explicit
        endpoint = s3_endpoint(explicit, config)
        session = given.get("session")
        if session is not None:
            if provider is not None:
                raise _refuse(url, "pass either session= or credential_provider=, not both")
            from obstore.auth.boto3 import Boto3CredentialProvider

            provider = Boto3CredentialProvider(session)
    elif kind == _GCS:
        if explicit:
            config["base_url"] = explicit
        endpoint = gcs_endpoint(explicit, config)
    else:
        if "account_name" in given:
            config["account_name"] = given["account_name"]
        if explicit:
            config["endpoint"] = explicit
        account = config.get("account_name") or os.environ.get("AZURE_STORAGE_ACCOUNT_NAME")
        endpoint = azure_endpoint(explicit, config) or (
            f"https://{account}.blob.core.windows.net" if account else None
        )
    client = cast("ClientConfig", client_options(given.get("client_options"), endpoint))
    retry = cast("RetryConfig", retry_config(given.get("retry_config")))
    try:
        if kind == _S3:
            store: Any = S3Store(
                bucket,
                config=cast("S3Config", config),
                client_options=client,
                retry_config=retry,
                credential_provider=provider,
            )
        elif kind == _GCS:
            store = GCSStore(
                bucket,
                config=cast("GCSConfig", config),
                client_options=client,
                retry_config=retry,
                credential_provider=provider,
            )
        else:
            store = AzureStore(
                bucket,
                config=cast("AzureConfig", config),
                client_options=client,
                retry_config=retry,
                credential_provider=provider,
            )
    except (obx.BaseError, ValueError, TypeError) as exc:
        first = str(exc).split("\n", 1)[0]
        raise _refuse(url, f"obstore refused the configuration: {first}") from exc
    return store, endpoint
