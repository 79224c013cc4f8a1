"""``s3://bucket/prefix`` URLs: what ``open_store`` calls for the ``s3`` scheme."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from botocore.config import Config

from eleanor_cloud.backends.s3._backend import DEFAULT_CONFLICT_RETRIES, S3Backend
from eleanor_cloud.errors import ConfigurationError

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_s3 import S3Client

__all__ = ["from_url"]


def from_url(
    url: str,
    *,
    client: S3Client | None = None,
    session: boto3.Session | None = None,
    config: Config | None = None,
    endpoint_url: str | None = None,
    region_name: str | None = None,
    extra_args: Mapping[str, str] | None = None,
    conflict_retries: int = DEFAULT_CONFLICT_RETRIES,
    page_size: int | None = None,
    unsafe_unconditional: bool = False,
) -> tuple[S3Backend, str]:
    """``s3://bucket/prefix`` -> ``(S3Backend, prefix)``; see :class:`S3Backend` options.

    The conditional-write probe writes under the URL's prefix (the prefix a runner's
    IAM policy allows).
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() != "s3":
        raise ConfigurationError(
            f"not an S3 URL: {url!r} (expected s3://bucket/prefix)", operation="open_store"
        )
    if "?" in rest or "#" in rest:
        raise ConfigurationError(
            f"S3 URL {url!r} must not have a query or fragment; pass options as keyword arguments",
            operation="open_store",
        )
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ConfigurationError(
            f"S3 URL {url!r} names no bucket (expected s3://bucket/prefix)", operation="open_store"
        )
    backend = S3Backend(
        bucket,
        client=client,
        session=session,
        config=config,
        endpoint_url=endpoint_url,
        region_name=region_name,
        extra_args=extra_args,
        conflict_retries=conflict_retries,
        page_size=page_size,
        unsafe_unconditional=unsafe_unconditional,
        probe_prefix=prefix,
    )
    return backend, prefix
