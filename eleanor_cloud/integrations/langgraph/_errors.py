"""The saver's errors: eleanor_cloud errors that name the thread, namespace and checkpoint."""

from __future__ import annotations

from eleanor_cloud.errors import Conflict, InvalidState

__all__ = ["CheckpointConflict", "CheckpointTooLarge", "UnserializableValue"]


class CheckpointConflict(Conflict):
    """Another writer advanced the thread first: this checkpoint was not made the latest.

    ``thread_id``, ``checkpoint_ns`` and ``checkpoint_id`` name what was refused;
    ``current`` is the checkpoint id the namespace's head points to now (``None`` if it
    has none) and ``current_writer`` who wrote it.
    """

    def __init__(
        self,
        message: str,
        *,
        key: str,
        thread_id: str,
        checkpoint_ns: str,
        checkpoint_id: str,
        current: str | None = None,
        current_writer: str | None = None,
    ) -> None:
        super().__init__(message, key=key, operation="put", current=current)
        self.thread_id = thread_id
        self.checkpoint_ns = checkpoint_ns
        self.checkpoint_id = checkpoint_id
        self.current_writer = current_writer


class CheckpointTooLarge(InvalidState):
    """A checkpoint (or one task's writes) is over the saver's object size limit.

    Raised before anything is written: no partial checkpoint is ever stored.
    """

    def __init__(self, message: str, *, key: str, size: int, limit: int) -> None:
        super().__init__(message, key=key, operation="put")
        self.size = size
        self.limit = limit


class UnserializableValue(InvalidState):
    """The saver's serializer cannot encode a channel value (or a write, or metadata)."""

    def __init__(self, message: str, *, thread_id: str, channel: str) -> None:
        super().__init__(message, operation="put")
        self.thread_id = thread_id
        self.channel = channel
