"""A LangGraph checkpoint saver on any eleanor_cloud store (S3, fsspec, local, memory).

::

    from langgraph.graph import StateGraph
    from eleanor_cloud.integrations.langgraph import ObjectStoreSaver

    saver = ObjectStoreSaver("s3://my-bucket/agents")
    graph = builder.compile(checkpointer=saver)
    graph.invoke(inputs, {"configurable": {"thread_id": "user-42"}})

Each checkpoint is one object written with a conditional create, and each namespace's
latest checkpoint is a small head object moved by compare-and-swap, so two processes
resuming one thread cannot both advance it: the second gets
:class:`CheckpointConflict`. Layout, IAM actions, limits and costs: docs/langgraph.md.
Needs ``pip install 'eleanor-cloud[langgraph]'``.
"""

from __future__ import annotations

from eleanor_cloud.errors import MissingDependency

try:
    import langgraph.checkpoint.base  # noqa: F401
except ModuleNotFoundError as _exc:  # pragma: no cover - exercised without the extra
    raise MissingDependency(
        f"the LangGraph checkpoint saver needs {_exc.name!r}: "
        "pip install 'eleanor-cloud[langgraph]'",
        install="eleanor-cloud[langgraph]",
    ) from _exc

from eleanor_cloud.integrations.langgraph._async import ObjectStoreSaver
from eleanor_cloud.integrations.langgraph._codec import DEFAULT_MAX_OBJECT_BYTES
from eleanor_cloud.integrations.langgraph._errors import (
    CheckpointConflict,
    CheckpointTooLarge,
    UnserializableValue,
)
from eleanor_cloud.integrations.langgraph._keys import DEFAULT_FOLDER

__all__ = [
    "DEFAULT_FOLDER",
    "DEFAULT_MAX_OBJECT_BYTES",
    "CheckpointConflict",
    "CheckpointTooLarge",
    "ObjectStoreSaver",
    "UnserializableValue",
]
