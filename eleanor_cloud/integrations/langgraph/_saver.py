"""The synchronous checkpoint saver: checkpoints and pending writes as objects.

Requests (S3 wording; every backend does the same operations):

- ``put``: 1 PUT of the checkpoint (``If-None-Match: *``) + 1 PUT of the namespace's
  head (``If-Match``); a head whose version this saver does not already know costs one
  GET first (the first put after another process's write).
- ``put_writes``: 1 PUT per call (``If-None-Match: *``: a task's writes are stored once),
  plus 1 unconditional PUT per special channel (error, interrupt, resume, scheduled),
  which LangGraph overwrites by design.
- ``get_tuple`` (latest): GET head + GET checkpoint + LIST of its writes + 1 GET per
  task that wrote; of an explicit ``checkpoint_id``: the same (the head is read to
  record what was current when it was loaded).
- ``list``: 1 LIST of the thread (per 1,000 keys) + 1 GET per listed checkpoint and
  per task that wrote to it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    PendingWrite,
    get_checkpoint_id,
    get_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from eleanor_cloud.backends.base import CREATE, OVERWRITE
from eleanor_cloud.errors import AlreadyExists, EleanorError, InvalidState, NotFound
from eleanor_cloud.integrations.langgraph import _codec
from eleanor_cloud.integrations.langgraph._errors import CheckpointConflict
from eleanor_cloud.integrations.langgraph._head import (
    MARKER,
    Heads,
    loaded_marker,
    parse_marker,
)
from eleanor_cloud.integrations.langgraph._keys import DEFAULT_FOLDER, Layout, encode_segment
from eleanor_cloud.store import StateStore, open_store

__all__ = ["SyncSaver"]

_PARALLEL_READS = 8


def _ids(config: RunnableConfig) -> tuple[str, str]:
    conf = config.get("configurable") or {}
    if conf.get("thread_id") in (None, ""):
        raise InvalidState(
            "the config has no configurable 'thread_id': pass "
            "{'configurable': {'thread_id': ...}} to the graph"
        )
    thread_id, ns = str(conf["thread_id"]), str(conf.get("checkpoint_ns") or "")
    encode_segment(thread_id, field="thread_id")
    encode_segment(ns, field="checkpoint_ns")
    return thread_id, ns


class SyncSaver(BaseCheckpointSaver[int]):
    """The sync half of :class:`ObjectStoreSaver` (see the package docstring)."""

    def __init__(
        self,
        store: StateStore | str,
        *,
        folder: str = DEFAULT_FOLDER,
        max_object_bytes: int = _codec.DEFAULT_MAX_OBJECT_BYTES,
        serde: SerializerProtocol | None = None,
    ) -> None:
        super().__init__(serde=serde)
        self.store = open_store(store) if isinstance(store, str) else store
        if not isinstance(self.store, StateStore):
            raise InvalidState(f"store must be a StateStore or a URL, got {type(store).__name__}")
        if not isinstance(max_object_bytes, int) or max_object_bytes < 1024:
            raise InvalidState(f"max_object_bytes must be an int >= 1024, got {max_object_bytes!r}")
        self.max_object_bytes = max_object_bytes
        folder_key = encode_segment(folder, field="folder")
        root = f"{self.store.prefix}/{folder_key}" if self.store.prefix else folder_key
        self.layout = Layout(root)
        self.backend = self.store.backend
        self._heads = Heads(self.backend, self.layout, self.store.writer)

    # -- reading -------------------------------------------------------------------------

    def _read_many(self, keys: Sequence[str]) -> list[bytes | None]:
        def one(key: str) -> bytes | None:
            try:
                return self.backend.read(key)[0]
            except NotFound:
                return None

        if len(keys) <= 1:
            return [one(k) for k in keys]
        with ThreadPoolExecutor(min(_PARALLEL_READS, len(keys))) as pool:
            return list(pool.map(one, keys))

    def _writes_of(self, keys: Sequence[str]) -> list[PendingWrite]:
        found: list[_codec.StoredWrite] = []
        for key, data in zip(keys, self._read_many(keys), strict=True):
            if data is not None:
                found.extend(_codec.decode_writes(self.serde, data, key=key))
        found.sort(key=_codec.StoredWrite.sort_key)
        return [(w.task_id, w.channel, w.value) for w in found]

    def _tuple(
        self, stored: _codec.StoredCheckpoint, writes: list[PendingWrite], marker: str | None
    ) -> CheckpointTuple:
        conf: dict[str, Any] = {
            "thread_id": stored.thread_id,
            "checkpoint_ns": stored.checkpoint_ns,
            "checkpoint_id": stored.checkpoint_id,
        }
        if marker is not None:
            conf[MARKER] = marker
        parent = (
            {
                "configurable": {
                    "thread_id": stored.thread_id,
                    "checkpoint_ns": stored.checkpoint_ns,
                    "checkpoint_id": stored.parent_checkpoint_id,
                }
            }
            if stored.parent_checkpoint_id
            else None
        )
        return CheckpointTuple(
            config={"configurable": conf},
            checkpoint=cast(Checkpoint, stored.checkpoint),
            metadata=cast(CheckpointMetadata, stored.metadata),
            parent_config=cast(RunnableConfig | None, parent),
            pending_writes=writes,
        )

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        thread_id, ns = _ids(config)
        checkpoint_id = get_checkpoint_id(config)
        marker: str | None = None
        if checkpoint_id:
            head = self._heads.read(thread_id, ns)
            marker = loaded_marker(ns, checkpoint_id, head[0].checkpoint_id if head else None)
        else:
            head = self._heads.read(thread_id, ns)
            if head is None:
                return None
            checkpoint_id = head[0].checkpoint_id
        key = self.layout.checkpoint(thread_id, ns, checkpoint_id)
        try:
            data, _ = self.backend.read(key)
        except NotFound:
            return None
        stored = _codec.decode_checkpoint(self.serde, data, key=key)
        writes_prefix = self.layout.writes_prefix(thread_id, ns, checkpoint_id)
        writes = self._writes_of(list(self.backend.list(writes_prefix)))
        return self._tuple(stored, writes, marker)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        ns_only: str | None = None
        id_only: str | None = None
        if config is None:
            prefix = self.layout.root + "/"
        else:
            thread_id, _ = _ids(config)
            prefix = self.layout.thread_prefix(thread_id)
            conf = config.get("configurable") or {}
            if conf.get("checkpoint_ns") is not None:
                ns_only = str(conf["checkpoint_ns"])
            id_only = get_checkpoint_id(config)
        before_id = get_checkpoint_id(before) if before else None
        checkpoints: dict[tuple[str, str, str], str] = {}
        writes: dict[tuple[str, str, str], list[str]] = {}
        for key in self.backend.list(prefix):
            parsed = self.layout.parse(key)
            if parsed is None or parsed.checkpoint_id is None:
                continue
            at = (parsed.thread_id, parsed.checkpoint_ns, parsed.checkpoint_id)
            if parsed.kind == "checkpoint":
                checkpoints[at] = key
            else:
                writes.setdefault(at, []).append(key)
        chosen = sorted(
            (
                at
                for at in checkpoints
                if (ns_only is None or at[1] == ns_only)
                and (id_only is None or at[2] == id_only)
                and (before_id is None or at[2] < before_id)
            ),
            key=lambda at: (at[0], at[1], _Desc(at[2])),
        )
        yielded = 0
        for at in chosen:
            if limit is not None and yielded >= limit:
                return
            key = checkpoints[at]
            try:
                data, _ = self.backend.read(key)
            except NotFound:
                continue  # deleted since the listing
            stored = _codec.decode_checkpoint(self.serde, data, key=key)
            if filter and not all(stored.metadata.get(k) == v for k, v in filter.items()):
                continue
            yield self._tuple(stored, self._writes_of(writes.get(at, [])), None)
            yielded += 1

    # -- writing -------------------------------------------------------------------------

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        thread_id, ns = _ids(config)
        conf = config.get("configurable") or {}
        parent = get_checkpoint_id(config) or None
        checkpoint_id = str(checkpoint["id"])
        key = self.layout.checkpoint(thread_id, ns, checkpoint_id)
        md = dict(get_checkpoint_metadata(config, metadata))
        md.pop("writes", None)
        body, write_id = _codec.encode_checkpoint(
            self.serde,
            key=key,
            limit=self.max_object_bytes,
            writer=self.store.writer,
            thread_id=thread_id,
            checkpoint_ns=ns,
            parent_checkpoint_id=parent,
            checkpoint=dict(checkpoint),
            metadata=md,
        )
        marked, head_at_load = parse_marker(conf.get(MARKER), ns, parent)
        expected = head_at_load if marked else parent
        try:
            self.backend.write(key, body, CREATE)
        except AlreadyExists:
            if self._own_write(key, write_id):
                pass  # our own write, whose answer was lost and retried
            else:
                raise CheckpointConflict(
                    f"thread {thread_id!r} (namespace {ns!r}): checkpoint {checkpoint_id!r} "
                    "already exists, written by another process; checkpoint ids are unique, "
                    "so two writers produced the same one (did two processes resume this "
                    "thread at once?)",
                    key=key,
                    thread_id=thread_id,
                    checkpoint_ns=ns,
                    checkpoint_id=checkpoint_id,
                ) from None
        try:
            self._heads.advance(thread_id, ns, expected=expected, new=checkpoint_id, parent=parent)
        except CheckpointConflict:
            self._discard(key)
            raise
        return {
            "configurable": {
                "thread_id": thread_id,
                "checkpoint_ns": ns,
                "checkpoint_id": checkpoint_id,
            }
        }

    def _own_write(self, key: str, write_id: str) -> bool:
        try:
            data, _ = self.backend.read(key)
        except NotFound:
            return False
        return _codec.write_id_of(data) == write_id

    def _discard(self, key: str) -> None:
        """Remove the checkpoint a refused put wrote, so it is not listed (best effort)."""
        with contextlib.suppress(EleanorError):
            self.backend.delete(key)

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        thread_id, ns = _ids(config)
        checkpoint_id = get_checkpoint_id(config)
        if not checkpoint_id:
            raise InvalidState(
                f"thread {thread_id!r}: put_writes needs the config of a saved checkpoint "
                "(configurable 'checkpoint_id')"
            )
        regular = [(i, c, v) for i, (c, v) in enumerate(writes) if c not in WRITES_IDX_MAP]
        special = {c: (WRITES_IDX_MAP[c], c, v) for c, v in writes if c in WRITES_IDX_MAP}
        batches: list[tuple[int, list[tuple[int, str, Any]]]] = []
        if regular:
            batches.append((0, regular))
        batches.extend((idx, [(idx, c, v)]) for idx, c, v in special.values())
        bodies = []
        for slot, batch in batches:  # encode all first: nothing is written if one fails
            key = self.layout.writes(thread_id, ns, checkpoint_id, str(task_id), slot)
            body = _codec.encode_writes(
                self.serde,
                key=key,
                limit=self.max_object_bytes,
                writer=self.store.writer,
                thread_id=thread_id,
                checkpoint_ns=ns,
                checkpoint_id=checkpoint_id,
                task_id=str(task_id),
                task_path=task_path,
                writes=batch,
            )
            bodies.append((slot, key, body))
        for slot, key, body in bodies:
            if slot >= 0:
                # A task's writes are stored once (LangGraph's contract): first one wins.
                with contextlib.suppress(AlreadyExists):
                    self.backend.write(key, body, CREATE)
            else:
                self.backend.write(key, body, OVERWRITE)

    # -- deleting ------------------------------------------------------------------------

    def delete_thread(self, thread_id: str) -> None:
        prefix = self.layout.thread_prefix(str(thread_id))
        found = list(self.backend.list(prefix))
        heads = [k for k in found if k.endswith("/head.json")]
        rest = [k for k in found if not k.endswith("/head.json")]
        for key in heads + rest:
            self.backend.delete(key)  # heads first: readers see no thread, not a dangling head
        self._heads.forget_thread(str(thread_id))


class _Desc:
    """A sort key that orders strings descending (newest checkpoint id first)."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __lt__(self, other: _Desc) -> bool:
        return self.value > other.value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Desc) and self.value == other.value

    __hash__ = None  # type: ignore[assignment]
