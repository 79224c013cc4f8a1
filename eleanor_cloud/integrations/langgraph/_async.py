"""The async half of the saver: each method runs its sync twin in a worker thread.

eleanor_cloud's backends are synchronous (one client, retries, reconciliation), so the
async methods keep the event loop free by running them with ``asyncio.to_thread``;
``alist`` fetches one checkpoint per hop, so a ``limit`` still stops the reads early.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)

from eleanor_cloud.integrations.langgraph._maintenance import MaintainedSaver

__all__ = ["ObjectStoreSaver"]

_END = object()


class ObjectStoreSaver(MaintainedSaver):
    """A LangGraph checkpoint saver on any eleanor_cloud store (S3, fsspec, local, memory).

    ``ObjectStoreSaver("s3://bucket/prefix")`` or ``ObjectStoreSaver(store)``; options:
    ``folder`` (default ``_langgraph``, under the store's prefix), ``max_object_bytes``
    (default 4 MiB per checkpoint or per task's writes) and ``serde``.
    """

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await asyncio.to_thread(self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        items = self.list(config, filter=filter, before=before, limit=limit)
        while True:
            item = await asyncio.to_thread(next, items, _END)
            if item is _END:
                return
            assert isinstance(item, CheckpointTuple)
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await asyncio.to_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await asyncio.to_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await asyncio.to_thread(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await asyncio.to_thread(self.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await asyncio.to_thread(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await asyncio.to_thread(self.prune, thread_ids, strategy=strategy)
