"""Module-level helpers for the obstore tests (picklable, so subprocesses can use them)."""

from __future__ import annotations

from eleanor_cloud.backends.obstore import ObstoreBackend, from_url
from tests.support.emulators import AZURITE_ACCOUNT, AZURITE_KEY


def s3_backend(endpoint: str, bucket: str, prefix: str = "") -> ObstoreBackend:
    """A new backend (its own obstore client) on ``bucket`` at ``endpoint``: one per
    process, as a fresh Lambda invocation would open it."""
    backend, _ = from_url(f"obstore+s3://{bucket}/{prefix}", endpoint_url=endpoint)
    return backend


def azure_backend(blob_url: str, container: str, prefix: str = "") -> ObstoreBackend:
    """A new backend on Azurite's ``container`` (``blob_url`` without the account)."""
    backend, _ = from_url(
        f"obstore+az://{container}/{prefix}",
        account_name=AZURITE_ACCOUNT,
        endpoint_url=f"{blob_url}/{AZURITE_ACCOUNT}",
        config={"account_key": AZURITE_KEY},
    )
    return backend


def gcs_backend(base_url: str, bucket: str, prefix: str = "") -> ObstoreBackend:
    """A new backend on fake-gcs-server's ``bucket`` (no credentials: a static token)."""
    backend, _ = from_url(
        f"obstore+gs://{bucket}/{prefix}", endpoint_url=base_url, config={"bearer_token": "t"}
    )
    return backend


def local_backend(root: str) -> ObstoreBackend:
    """A new backend on the directory ``root`` (obstore's LocalStore)."""
    backend, _ = from_url(f"obstore+file://{root}")
    return backend
