"""What a records stage reads (:class:`Page`) and what it reports on (:class:`Batch`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import JsonValue

from eleanor_cloud.engine.progress import REASON_LIMIT
from eleanor_cloud.errors import InvalidState
from eleanor_cloud.models import RecordStatus

__all__ = ["Batch", "Page", "default_id"]

_OK = (RecordStatus.SUCCESS, "")


@dataclass(frozen=True)
class Page:
    """One page of a stage's input: ``items``, the ``cursor`` where the next page starts
    (``None``: there is none) and the ``total`` record count if the source knows it."""

    items: Sequence[Any]
    cursor: JsonValue = None
    total: int | None = None


def default_id(item: Any) -> str:
    if isinstance(item, dict) and "id" in item:
        return str(item["id"])
    if hasattr(item, "id"):
        return str(item.id)
    if isinstance(item, str | int):
        return str(item)
    raise InvalidState(f"cannot tell the id of record {item!r}: pass id_of=")


class Batch:
    """The records of one batch; report each one's status before asking for the next.

    ``key`` is stable across re-offers (task, stage, batch position): pass it to a sink
    to deduplicate. A record not reported counts as ``unprocessed``.
    """

    def __init__(
        self, items: list[Any], ids: list[str], key: str, position: int, retry: bool
    ) -> None:
        self.items, self.ids, self.key, self.position, self.retry = items, ids, key, position, retry
        self._known = set(ids)
        # By identity: report(item) finds its id in O(1), however large the batch.
        self._by_item = {id(item): rid for item, rid in zip(items, ids, strict=True)}
        self._outcomes: dict[str, tuple[RecordStatus, str]] = {}

    def __iter__(self) -> Iterator[Any]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def report(self, record: Any, status: RecordStatus, reason: str = "") -> None:
        if status.__class__ is not RecordStatus:
            raise InvalidState(f"batch {self.key}: status must be a RecordStatus, got {status!r}")
        rid = self._by_item.get(id(record))
        if rid is None:
            rid = record if isinstance(record, str) else str(record)
            if rid not in self._known:
                raise InvalidState(f"batch {self.key}: record {rid!r} is not in this batch")
        self._outcomes[rid] = (
            status,
            reason if len(reason) <= REASON_LIMIT else reason[:REASON_LIMIT],
        )

    def ok(self, record: Any) -> None:
        rid = self._by_item.get(id(record))
        if rid is None:
            self.report(record, RecordStatus.SUCCESS)
        else:  # the hot path: one dict lookup and one store
            self._outcomes[rid] = _OK

    def fail(self, record: Any, reason: str = "") -> None:
        self.report(record, RecordStatus.ERROR, reason)

    def skip(self, record: Any, reason: str = "") -> None:
        self.report(record, RecordStatus.UNPROCESSED, reason)

    def outcomes(self) -> dict[str, tuple[RecordStatus, str]]:
        if len(self._outcomes) == len(self.ids):
            return self._outcomes
        return {
            rid: self._outcomes.get(rid, (RecordStatus.UNPROCESSED, "not reported"))
            for rid in self.ids
        }
