"""S3 backend on boto3: conditional writes with ``If-None-Match`` / ``If-Match``.

=============  ===============================================  ==========
operation      request                                          requests
=============  ===============================================  ==========
read           ``GetObject``                                    1
create         ``PutObject`` with ``IfNoneMatch="*"``           1
replace (CAS)  ``PutObject`` with ``IfMatch=<etag>``            1
overwrite      ``PutObject``                                    1
delete         ``DeleteObject`` (``IfMatch=<etag>`` if given)   1
list           ``ListObjectsV2``                                1 per page
=============  ===============================================  ==========

No request is made when the backend is opened, and none is added to an operation (no
HEAD before a PUT, no bucket check per call), except once per process: before the
first conditional write to an endpoint and bucket, two or three conditional PutObject on
``<prefix>/_probe/conditions.json`` check that the endpoint honours ``If-None-Match``
and ``If-Match`` (:mod:`._probe`). One that ignores them (two hosts could both run a
stage) is refused with ``NotSupported``, unless the backend was opened with
``unsafe_unconditional=True``: then it writes anyway and warns with
``UnsafeBackendWarning``. The verdict is cached per process (:func:`clear_probe_cache`
forgets it); an endpoint and bucket named in ``ELEANOR_CONDITIONS_VERIFIED`` are not
probed (see :mod:`._probe`). The version is the ETag exactly as S3 returns it. 412
PreconditionFailed means the condition did not hold; 409 ConditionalRequestConflict (a concurrent
conditional write was in flight) is retried here a bounded number of times with
jittered backoff, as S3 documents, then reported as ``Conflict``. Transient failures
(5xx, throttling, lost connections) are retried by botocore's *standard* retry mode;
what is left is ``Unavailable``.

Every call is bounded in time: by default 1 s to connect, 2 s to wait for bytes, 3
attempts, so a call that hangs every time gives up after about
:data:`WORST_CASE_CALL_SECONDS` (12 s), well inside a lease's renewal interval (20 s at
the default TTL). A ``config=`` of the caller's wins over each default it sets.

A conditional write whose response was lost is retried by botocore and answered 412;
:class:`~eleanor_cloud.store.StateStore` recognises its own ``write_id`` with one GET
and reports success. ``Unavailable`` from a write means it was not seen to land: a
request still in flight may land later, and then the writer's next conditional write
conflicts, so nothing is lost or silently overwritten. A conditional delete whose
retry answers 404 is taken as done (the first attempt most likely deleted it).

IAM actions needed: ``s3:GetObject``, ``s3:PutObject`` and ``s3:ListBucket`` to run
tasks; ``s3:DeleteObject`` only to delete them (``eleanor-cloud delete``).
"""

from __future__ import annotations

import importlib.util

from eleanor_cloud.errors import MissingDependency

try:
    # Checked here, before the modules that import them: a missing extra is an install
    # hint, not a traceback from deep inside a backend module. boto3 is looked for, not
    # imported: the default client is botocore's (see ``_options``), and boto3's import
    # is paid only by a caller who passes a boto3 session or client.
    import botocore  # noqa: F401

    if importlib.util.find_spec("boto3") is None:
        raise ModuleNotFoundError("No module named 'boto3'", name="boto3")
except ModuleNotFoundError as _exc:  # pragma: no cover - exercised without the extra
    raise MissingDependency(
        f"the S3 backend needs {_exc.name!r}: pip install 'eleanor-cloud[s3]'",
        install="eleanor-cloud[s3]",
    ) from _exc

from eleanor_cloud.backends.s3._backend import DEFAULT_CONFLICT_RETRIES, S3Backend
from eleanor_cloud.backends.s3._options import (
    ALLOWED_EXTRA_ARGS,
    CONNECT_TIMEOUT,
    READ_TIMEOUT,
    TOTAL_MAX_ATTEMPTS,
    WORST_CASE_CALL_SECONDS,
    validate_bucket,
)
from eleanor_cloud.backends.s3._probe import (
    PROBE_NAME,
    PROBE_REQUESTS,
    ConditionsVerdict,
    clear_probe_cache,
)
from eleanor_cloud.backends.s3._url import from_url

__all__ = [
    "ALLOWED_EXTRA_ARGS",
    "CONNECT_TIMEOUT",
    "DEFAULT_CONFLICT_RETRIES",
    "PROBE_NAME",
    "PROBE_REQUESTS",
    "READ_TIMEOUT",
    "TOTAL_MAX_ATTEMPTS",
    "WORST_CASE_CALL_SECONDS",
    "ConditionsVerdict",
    "S3Backend",
    "clear_probe_cache",
    "from_url",
    "validate_bucket",
]
