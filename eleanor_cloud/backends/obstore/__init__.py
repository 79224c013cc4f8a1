"""Backend on obstore (the Python binding of Rust's ``object_store``): S3, GCS, Azure,
a local directory and memory, with a fraction of boto3's import and client cost.

=============  ======================================================  ==========
operation      request (S3 / Azure; GCS compares generations)          requests
=============  ======================================================  ==========
read           ``GET``                                                 1
create         ``PUT`` with ``If-None-Match: *`` (GCS: generation 0)  1
replace (CAS)  ``PUT`` with ``If-Match: <etag>`` (GCS: generation)    1
overwrite      ``PUT``                                                 1
delete         ``DELETE``, unconditional                               1
list           ``LIST`` (``list_with_delimiter`` for ``/`` roll-ups)   1 per page
=============  ======================================================  ==========

The version is the ETag as the store returns it (the same token the boto3 backend
reads, so both can work on one bucket), the generation on GCS, and a content hash on a
local directory (:mod:`._local`: obstore's ``LocalStore`` has no compare-and-swap, so
it runs under the local-directory backend's lock protocol). A conditional delete raises
``NotSupported``: object_store has none, and the library never needs one.

Before the first conditional write to an endpoint and bucket, once per process, three
conditional PUTs on ``<prefix>/_probe/conditions.json`` check that the endpoint honours
the conditions (:mod:`._probe`); one that ignores them is refused with
``NotSupported`` unless opened with ``unsafe_unconditional=True``. 409
ConditionalRequestConflict is retried with jittered backoff, then ``Conflict``;
transient failures are retried by object_store; what is left is ``Unavailable``.
Every call is bounded: 1 s to connect, 2 s to wait for bytes, 3 attempts, so a call
that hangs every time gives up after about :data:`WORST_CASE_CALL_SECONDS`.

No request is made when the backend is opened, and none is added to an operation.
obstore is not fork-safe (its runtime's threads do not survive ``os.fork()``): a process
forked after the first request refuses with ``ConfigurationError`` instead of hanging.
"""

from __future__ import annotations

from eleanor_cloud.errors import MissingDependency

try:
    # Checked here, before the modules that import it: a missing extra is an install
    # hint, not a traceback from deep inside a backend module.
    import obstore  # noqa: F401
except ModuleNotFoundError as _exc:  # pragma: no cover - exercised without the extra
    raise MissingDependency(
        f"the obstore backend needs {_exc.name!r}: pip install 'eleanor-cloud[obstore]'",
        install="eleanor-cloud[obstore]",
    ) from _exc

from eleanor_cloud.backends.obstore._backend import DEFAULT_CONFLICT_RETRIES, ObstoreBackend
from eleanor_cloud.backends.obstore._options import (
    CONNECT_TIMEOUT,
    MAX_RETRIES,
    READ_TIMEOUT,
    RETRY_TIMEOUT,
    WORST_CASE_CALL_SECONDS,
)
from eleanor_cloud.backends.obstore._probe import (
    PROBE_NAME,
    PROBE_REQUESTS,
    ConditionsVerdict,
    clear_probe_cache,
)
from eleanor_cloud.backends.obstore._url import SCHEMES, from_url

__all__ = [
    "CONNECT_TIMEOUT",
    "DEFAULT_CONFLICT_RETRIES",
    "MAX_RETRIES",
    "PROBE_NAME",
    "PROBE_REQUESTS",
    "READ_TIMEOUT",
    "RETRY_TIMEOUT",
    "SCHEMES",
    "WORST_CASE_CALL_SECONDS",
    "ConditionsVerdict",
    "ObstoreBackend",
    "clear_probe_cache",
    "from_url",
]
