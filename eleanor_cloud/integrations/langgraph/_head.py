"""The per-namespace head: which checkpoint is the latest, moved only by compare-and-swap.

A put names the head it expects (its parent, or for the first put after loading an
explicitly addressed checkpoint, the head seen when it was loaded) and replaces exactly
that version of ``head.json``. A writer that resumed from a head somebody else has since
advanced loses the swap and gets :class:`CheckpointConflict`; nobody's checkpoint is
ever shadowed silently.

Versions are remembered per *checkpoint id the head pointed to* (a bounded map), so a
normal super-step needs no read before its write. The head body carries the unique
checkpoint id, so a remembered version is either current or refused by the store: a
stale entry costs a refused write and one read, never a lost update.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any

from eleanor_cloud.backends.base import CREATE, ObjectBackend, Replace, Version
from eleanor_cloud.errors import AlreadyExists, Conflict, NotFound
from eleanor_cloud.integrations.langgraph._codec import Head, decode_head, encode_head
from eleanor_cloud.integrations.langgraph._errors import CheckpointConflict
from eleanor_cloud.integrations.langgraph._keys import Layout

__all__ = ["MARKER", "Heads", "loaded_marker", "parse_marker"]

# The configurable key a get_tuple of an explicitly addressed checkpoint adds to the
# config it returns (LangGraph keeps it for the run; "__" keeps it out of metadata).
MARKER = "__eleanor_loaded__"
_CACHE_SIZE = 4096


def loaded_marker(ns: str, loaded_id: str, head_id: str | None) -> str:
    return json.dumps([ns, loaded_id, head_id])


def parse_marker(config_value: Any, ns: str, parent: str | None) -> tuple[bool, str | None]:
    """``(True, head id seen at load)`` if the marker is for this namespace and parent."""
    if not isinstance(config_value, str) or parent is None:
        return False, None
    try:
        m_ns, m_loaded, m_head = json.loads(config_value)
    except (ValueError, TypeError):
        return False, None
    if m_ns == ns and m_loaded == parent and (m_head is None or isinstance(m_head, str)):
        return True, m_head
    return False, None


class Heads:
    """Reads and compare-and-swaps the heads of one saver's namespaces."""

    def __init__(self, backend: ObjectBackend, layout: Layout, writer: str) -> None:
        self._backend = backend
        self._layout = layout
        self._writer = writer
        self._versions: OrderedDict[tuple[str, str, str], Version] = OrderedDict()
        self._lock = threading.Lock()

    def _remember(self, thread_id: str, ns: str, checkpoint_id: str, version: Version) -> None:
        with self._lock:
            self._versions[(thread_id, ns, checkpoint_id)] = version
            self._versions.move_to_end((thread_id, ns, checkpoint_id))
            while len(self._versions) > _CACHE_SIZE:
                self._versions.popitem(last=False)

    def _remembered(self, thread_id: str, ns: str, checkpoint_id: str) -> Version | None:
        with self._lock:
            return self._versions.get((thread_id, ns, checkpoint_id))

    def forget_thread(self, thread_id: str) -> None:
        with self._lock:
            for k in [k for k in self._versions if k[0] == thread_id]:
                del self._versions[k]

    def read(self, thread_id: str, ns: str) -> tuple[Head, Version] | None:
        key = self._layout.head(thread_id, ns)
        try:
            data, version = self._backend.read(key)
        except NotFound:
            return None
        head = decode_head(data, key=key)
        self._remember(thread_id, ns, head.checkpoint_id, version)
        return head, version

    def _conflict(
        self, thread_id: str, ns: str, new: str, expected: str | None, why: str
    ) -> CheckpointConflict:
        current = self.read(thread_id, ns)
        now = (
            f"its latest checkpoint is now {current[0].checkpoint_id!r}, written by "
            f"{current[0].writer} at {current[0].written_at}"
            if current
            else "it has no latest checkpoint now (deleted?)"
        )
        return CheckpointConflict(
            f"thread {thread_id!r} (namespace {ns!r}): checkpoint {new!r} was not saved "
            f"as the latest because {why}: this run continued from {expected!r} but {now}. "
            "Another process resumed this thread at the same time; load the thread again "
            "(graph.get_state) and decide whether to retry",
            key=self._layout.head(thread_id, ns),
            thread_id=thread_id,
            checkpoint_ns=ns,
            checkpoint_id=new,
            current=current[0].checkpoint_id if current else None,
            current_writer=current[0].writer if current else None,
        )

    def advance(
        self, thread_id: str, ns: str, *, expected: str | None, new: str, parent: str | None
    ) -> None:
        """Point the head at ``new`` if it points at ``expected`` (``None``: a new root)."""
        key = self._layout.head(thread_id, ns)
        body = encode_head(writer=self._writer, checkpoint_id=new, parent_checkpoint_id=parent)
        if expected is None:
            # A new root (no parent): create the head; on a thread that has one, the
            # root becomes the latest (LangGraph's contract), still by compare-and-swap.
            try:
                version = self._backend.write(key, body, CREATE)
            except AlreadyExists:
                current = self.read(thread_id, ns)
                if current is None:
                    raise self._conflict(
                        thread_id, ns, new, expected, "the head changed meanwhile"
                    ) from None
                if current[0].checkpoint_id == new:
                    return  # our own create landed; its answer was lost and the retry refused
                try:
                    version = self._backend.write(key, body, Replace(current[1]))
                except Conflict as exc:
                    raise self._conflict(
                        thread_id, ns, new, current[0].checkpoint_id, "another root won"
                    ) from exc
            self._remember(thread_id, ns, new, version)
            return
        for attempt in range(2):
            known = self._remembered(thread_id, ns, expected) if attempt == 0 else None
            if known is None:
                current = self.read(thread_id, ns)
                if current is None:
                    raise self._conflict(thread_id, ns, new, expected, "the thread has no head")
                if current[0].checkpoint_id == new and attempt == 1:
                    return  # our own swap landed; its answer was lost and the retry refused
                if current[0].checkpoint_id != expected:
                    raise self._conflict(
                        thread_id, ns, new, expected, "another writer advanced it first"
                    )
                known = current[1]
            try:
                version = self._backend.write(key, body, Replace(known))
            except Conflict as exc:
                if attempt == 1:
                    raise self._conflict(
                        thread_id, ns, new, expected, "another writer advanced it first"
                    ) from exc
                continue  # a remembered version may be stale: read the head once
            self._remember(thread_id, ns, new, version)
            return
