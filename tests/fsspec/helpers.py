"""Module-level backend builders (picklable, so the conformance suite's subprocesses
can open a new backend over the same bucket, container or directory)."""

from __future__ import annotations

import os

# gcsfs reads this at import: its experimental zonal-bucket path probes the bucket type
# with calls fake-gcs-server does not implement.
os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"

from typing import Any

from eleanor_cloud.backends.fsspec import FsspecBackend

S3_CREDENTIALS = {"key": "testing", "secret": "testing"}


def s3_filesystem(endpoint_url: str) -> Any:
    import s3fs

    return s3fs.S3FileSystem(endpoint_url=endpoint_url, **S3_CREDENTIALS)


def gcs_filesystem(endpoint_url: str) -> Any:
    import gcsfs

    return gcsfs.GCSFileSystem(endpoint_url=endpoint_url, token="anon", project="test")


def azure_filesystem(connection_string: str) -> Any:
    import adlfs

    return adlfs.AzureBlobFileSystem(connection_string=connection_string)


def s3fs_backend(endpoint_url: str, bucket: str) -> FsspecBackend:
    return FsspecBackend(s3_filesystem(endpoint_url), bucket)


def gcsfs_backend(endpoint_url: str, bucket: str) -> FsspecBackend:
    return FsspecBackend(gcs_filesystem(endpoint_url), bucket)


def adlfs_backend(connection_string: str, container: str) -> FsspecBackend:
    return FsspecBackend(azure_filesystem(connection_string), container)


def local_backend(root: str) -> FsspecBackend:
    from fsspec.implementations.local import LocalFileSystem

    return FsspecBackend(LocalFileSystem(), root)
