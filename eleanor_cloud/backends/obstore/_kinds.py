"""What differs between obstore's stores, in one table the backend reads."""

from __future__ import annotations

from typing import Any

from obstore.store import AzureStore, GCSStore, LocalStore, MemoryStore, S3Store

from eleanor_cloud.errors import ConfigurationError

__all__ = ["Kind", "kind_of"]


class Kind:
    """A store's URL scheme, where the bucket's name is in its config, which field of
    ``PutResult``/``ObjectMeta`` is the compare-and-swap token (``""``: none; the
    local directory hashes content), a token no object ever has (for the probe), and
    the endpoint named when the caller configured none.

    A plain class, not a dataclass: this module is on the cold-start path, and building
    a dataclass costs more than the five attributes are worth.
    """

    __slots__ = ("bucket_key", "endpoint", "scheme", "stale", "token")

    def __init__(self, scheme: str, bucket_key: str, token: str, stale: str, endpoint: str) -> None:
        self.scheme, self.bucket_key, self.token = scheme, bucket_key, token
        self.stale, self.endpoint = stale, endpoint


# S3 and Azure compare ETags (If-Match); GCS compares generations
# (x-goog-if-generation-match), which obstore reports as ``version``. The stale tokens:
# an all-zero MD5 (S3's ETags are MD5 hex), an Azure ETag below any clock, generation 1
# (GCS generations are microsecond timestamps).
_KINDS: dict[type[Any], Kind] = {
    S3Store: Kind("s3", "bucket", "e_tag", '"00000000000000000000000000000000"', "aws"),
    GCSStore: Kind("gs", "bucket", "version", "1", "https://storage.googleapis.com"),
    AzureStore: Kind("az", "container_name", "e_tag", '"0x0"', "azure"),
    MemoryStore: Kind("memory", "", "e_tag", "", "memory"),
    LocalStore: Kind("file", "", "", "", "local"),
}


def kind_of(store: object) -> Kind:
    """The kind of an obstore store; ``ConfigurationError`` for anything else."""
    for cls, kind in _KINDS.items():
        if isinstance(store, cls):
            return kind
    raise ConfigurationError(
        f"store must be an obstore S3Store, GCSStore, AzureStore, LocalStore or "
        f"MemoryStore, got {type(store).__name__}",
        operation="open_store",
    )
