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
HEAD before a PUT, no bucket check per call). The version is the ETag exactly as S3
returns it. 412 PreconditionFailed means the condition did not hold; 409
ConditionalRequestConflict (a concurrent conditional write was in flight) is retried
here a bounded number of times with jittered backoff, as S3 documents, then reported
as ``Conflict``. Transient failures (5xx, throttling, lost connections) are retried by
botocore's *standard* retry mode; what is left is ``Unavailable``.

A conditional write whose response was lost is retried by botocore and answered 412;
:class:`~eleanor_cloud.store.StateStore` recognises its own ``write_id`` with one GET
and reports success. ``Unavailable`` from a write means it was not seen to land: a
request still in flight may land later, and then the writer's next conditional write
conflicts, so nothing is lost or silently overwritten. A conditional delete whose
retry answers 404 is taken as done (the first attempt most likely deleted it).

IAM actions needed: ``s3:GetObject``, ``s3:PutObject``, ``s3:DeleteObject`` and
``s3:ListBucket``.
"""

from __future__ import annotations

from eleanor_cloud.errors import MissingDependency

try:
    # Checked here, before the modules that import them: a missing extra is an install
    # hint, not a traceback from deep inside a backend module.
    import boto3  # noqa: F401
    import botocore  # noqa: F401
except ModuleNotFoundError as _exc:  # pragma: no cover - exercised without the extra
    raise MissingDependency(
        f"the S3 backend needs {_exc.name!r}: pip install 'eleanor-cloud[s3]'",
        install="eleanor-cloud[s3]",
    ) from _exc

from eleanor_cloud.backends.s3._backend import DEFAULT_CONFLICT_RETRIES, S3Backend, from_url
from eleanor_cloud.backends.s3._options import ALLOWED_EXTRA_ARGS, validate_bucket

__all__ = [
    "ALLOWED_EXTRA_ARGS",
    "DEFAULT_CONFLICT_RETRIES",
    "S3Backend",
    "from_url",
    "validate_bucket",
]
