"""What the store hands back: a typed value with its version and envelope header, and
the store-owned documents (task manifest, lease)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from eleanor_cloud.backends.base import Version

__all__ = ["BROKEN_EXPIRY", "Lease", "Record", "TaskManifest"]

# ``eleanor-cloud lease --break`` sets a lease's ``expires_at`` to this: an operator's
# word that the holder is gone. A marker, not a time: takers recognise it without
# comparing clocks and take the lease over at once.
BROKEN_EXPIRY = "1970-01-01T00:00:00.000000Z"

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Record(Generic[T]):
    """A stored value with the version to update it by and who wrote it."""

    key: str
    value: T
    version: Version
    revision: int
    write_id: str
    writer: str
    epoch: int
    written_at: str


class TaskManifest(BaseModel):
    """``<prefix>/<task_id>/_task.json``: what a task is made of, written once at bind."""

    # defer_build: the schema is built on first use, not at `import eleanor_cloud`.
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    task_id: str
    stages: tuple[str, ...] = Field(min_length=1)
    state_class: str = Field(description="Dotted path of the task's shared state class")
    created_at: str
    metadata: dict[str, str] = Field(default_factory=dict)


class Lease(BaseModel):
    """``<prefix>/<task_id>/_lease.json``: who may advance the task, until when.

    ``epoch`` grows by one with every new holder; ``renewals`` by one with every renewal,
    so a challenger can see a lease move without trusting anybody's clock. ``floor``
    survives every holder: stage objects at or below it were left by a deleted
    incarnation of the task id (``eleanor_cloud.engine.delete_task``) and are never
    taken as this task's state.
    """

    # defer_build: the schema is built on first use, not at `import eleanor_cloud`.
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    task_id: str
    holder: str
    epoch: int = Field(ge=0)
    acquired_at: str
    expires_at: str
    ttl_seconds: float = Field(gt=0)
    renewals: int = Field(default=0, ge=0)
    released: bool = False
    floor: int = Field(default=0, ge=0)
