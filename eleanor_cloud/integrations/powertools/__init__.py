"""A Powertools for AWS Lambda idempotency persistence layer on any eleanor_cloud store.

::

    from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent
    from eleanor_cloud.integrations.powertools import ObjectStorePersistenceLayer

    persistence = ObjectStorePersistenceLayer("s3://my-bucket/idempotency")

    @idempotent(persistence_store=persistence, config=IdempotencyConfig())
    def handler(event, context): ...

Each record is one JSON object, created with a conditional create, completed with a
compare-and-swap and deleted conditionally (see ``_layer`` for the requests and
docs/powertools.md for IAM, limits and behaviour). Needs
``pip install 'eleanor-cloud[powertools]'``.
"""

from __future__ import annotations

from eleanor_cloud.errors import MissingDependency

try:
    import aws_lambda_powertools  # noqa: F401
except ModuleNotFoundError as _exc:  # pragma: no cover - exercised without the extra
    raise MissingDependency(
        f"the Powertools persistence layer needs {_exc.name!r}: "
        "pip install 'eleanor-cloud[powertools]'",
        install="eleanor-cloud[powertools]",
    ) from _exc

from eleanor_cloud.integrations.powertools._layer import (
    ObjectStorePersistenceLayer,
    RecordTakenOver,
)
from eleanor_cloud.integrations.powertools._record import (
    DEFAULT_FOLDER,
    DEFAULT_MAX_RECORD_BYTES,
    FORMAT,
    IdempotencyRecord,
    RecordTooLarge,
)

__all__ = [
    "DEFAULT_FOLDER",
    "DEFAULT_MAX_RECORD_BYTES",
    "FORMAT",
    "IdempotencyRecord",
    "ObjectStorePersistenceLayer",
    "RecordTakenOver",
    "RecordTooLarge",
]
