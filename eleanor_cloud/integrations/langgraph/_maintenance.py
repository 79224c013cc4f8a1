"""Maintenance operations of the saver: delete_for_runs, copy_thread, prune.

They list keys and rewrite heads; none is on a graph's hot path. ``delete_for_runs``
reads every checkpoint under the saver's root (the run id is in each checkpoint's
metadata, not in its key): 1 LIST per 1,000 keys + 1 GET per checkpoint.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence

from eleanor_cloud.backends.base import CREATE, Replace
from eleanor_cloud.errors import InvalidState, NotFound
from eleanor_cloud.integrations.langgraph import _codec
from eleanor_cloud.integrations.langgraph._keys import ParsedKey
from eleanor_cloud.integrations.langgraph._saver import SyncSaver

__all__ = ["MaintainedSaver"]

_At = tuple[str, str, str]  # thread, namespace, checkpoint id


class MaintainedSaver(SyncSaver):
    """:class:`SyncSaver` plus LangGraph's optional maintenance methods."""

    def _scan(self, prefix: str) -> tuple[dict[_At, str], dict[_At, list[str]], dict[_At, str]]:
        """Checkpoint keys, writes keys (by checkpoint) and head keys (by namespace)."""
        checkpoints: dict[_At, str] = {}
        writes: dict[_At, list[str]] = {}
        heads: dict[_At, str] = {}
        for key in self.backend.list(prefix):
            parsed: ParsedKey | None = self.layout.parse(key)
            if parsed is None:
                continue
            if parsed.kind == "head":
                heads[(parsed.thread_id, parsed.checkpoint_ns, "")] = key
            elif parsed.checkpoint_id is not None:
                at = (parsed.thread_id, parsed.checkpoint_ns, parsed.checkpoint_id)
                if parsed.kind == "checkpoint":
                    checkpoints[at] = key
                else:
                    writes.setdefault(at, []).append(key)
        return checkpoints, writes, heads

    def _drop(self, at: _At, checkpoints: dict[_At, str], writes: dict[_At, list[str]]) -> None:
        for key in writes.pop(at, []):
            self.backend.delete(key)
        self.backend.delete(checkpoints.pop(at))

    def _repoint(self, namespaces: Iterable[tuple[str, str]], checkpoints: dict[_At, str]) -> None:
        """Point each namespace's head at its newest remaining checkpoint (or remove it)."""
        for thread_id, ns in namespaces:
            current = self._heads.read(thread_id, ns)
            left = sorted(at[2] for at in checkpoints if at[:2] == (thread_id, ns))
            key = self.layout.head(thread_id, ns)
            if current is None or (thread_id, ns, current[0].checkpoint_id) in checkpoints:
                continue
            if not left:
                self.backend.delete(key)
                continue
            body = _codec.encode_head(
                writer=self.store.writer, checkpoint_id=left[-1], parent_checkpoint_id=None
            )
            self.backend.write(key, body, Replace(current[1]))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        runs = {str(r) for r in run_ids}
        if not runs:
            return
        checkpoints, writes, _ = self._scan(self.layout.root + "/")
        order = sorted(checkpoints)
        bodies = self._read_many([checkpoints[at] for at in order])
        doomed = []
        for at, data in zip(order, bodies, strict=True):
            if data is None:
                continue
            stored = _codec.decode_checkpoint(self.serde, data, key=checkpoints[at])
            if str(stored.metadata.get("run_id")) in runs:
                doomed.append(at)
        for at in doomed:
            self._drop(at, checkpoints, writes)
        self._repoint({at[:2] for at in doomed}, checkpoints)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        src, dst = str(source_thread_id), str(target_thread_id)
        source_prefix = self.layout.thread_prefix(src)
        target_prefix = self.layout.thread_prefix(dst)
        if next(iter(self.backend.list(target_prefix)), None) is not None:
            raise InvalidState(f"copy_thread: target thread {dst!r} already has checkpoints")
        found = list(self.backend.list(source_prefix))
        heads = [k for k in found if k.endswith("/head.json")]
        is_head = set(heads)
        for key in [k for k in found if k not in is_head] + heads:  # heads last: all or none
            try:
                data, _ = self.backend.read(key)
            except NotFound:
                continue
            doc = json.loads(data)
            if "thread_id" in doc:
                doc["thread_id"] = dst
            doc["write_id"] = uuid.uuid4().hex
            doc["writer"] = self.store.writer
            body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
            self.backend.write(target_prefix + key[len(source_prefix) :], body, CREATE)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        if strategy not in ("keep_latest", "delete"):
            raise InvalidState(
                f"prune: unknown strategy {strategy!r} (use 'keep_latest' or 'delete')"
            )
        for thread_id in map(str, thread_ids):
            if strategy == "delete":
                self.delete_thread(thread_id)
                continue
            checkpoints, writes, heads = self._scan(self.layout.thread_prefix(thread_id))
            keep: set[_At] = set()
            for _, ns, _ in heads:
                head = self._heads.read(thread_id, ns)
                if head is not None:
                    keep.add((thread_id, ns, head[0].checkpoint_id))
            for at in sorted(checkpoints):
                if at not in keep:
                    self._drop(at, checkpoints, writes)
            for at in [at for at in writes if at not in checkpoints]:
                for key in writes.pop(at):  # writes of checkpoints that are gone
                    self.backend.delete(key)
