"""The parts of the ``task`` document that describe a fanned-out stage.

A stage that defines ``plan()`` runs as shards (:mod:`eleanor_cloud.engine.fanout`);
``status`` shows it as the stage's ``fanout`` (the plan and the counts) and ``shards``
(one row per shard, in plan order), both ``null`` for any other stage. Without
``status --shards`` only what the plan and the ``done/`` listing tell is filled in (a
shard's id and whether it ended); the rest of each row is ``null``. See
:mod:`.shapes` for the rules every document follows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field
from pydantic.json_schema import SkipJsonSchema

from eleanor_cloud.cli.documents import Model, sometimes
from eleanor_cloud.models import StageStatus

if TYPE_CHECKING:
    from eleanor_cloud.cli.shard_view import FanoutView, ShardView

__all__ = ["FanoutInfo", "ShardRow", "fanout_info", "shard_rows"]


class FanoutInfo(Model):
    """A fanned-out stage's plan and how far its shards are; the sums are over every
    shard and ``null`` unless the shards were read (``status --shards``)."""

    plan_id: str = Field(description="Which plan (written once; workers of another refuse).")
    shards: int = Field(description="How many shards the plan has.")
    ended: int = Field(
        description="Shards that ended (COMPLETE or ERROR): those with a ``done/`` marker."
    )
    detailed: bool = Field(
        description="Each shard's status, records and holder were read (``--shards``)."
    )
    statuses: dict[str, int] | None = Field(description="How many shards are in each status.")
    done: int | None = Field(description="Records with a final outcome (``ok + fail``).")
    total: int | None = Field(description="The stage's record count, once every shard's is known.")
    ok: int | None
    fail: int | None
    live_holders: int | None = Field(description="Shards held right now by a live worker.")


class ShardRow(Model):
    """One shard of a fanned-out stage: ``id`` and ``ended`` always, the rest when read."""

    id: str
    ended: bool = Field(description="It has a ``done/`` marker: COMPLETE or ERROR.")
    status: StageStatus | None = Field(
        description="The shard's own status (``CREATED`` before its first attempt)."
    )
    attempts: int | None
    done: int | None = Field(description="Records with a final outcome (``ok + fail``).")
    total: int | None = Field(description="The shard's record count, if its source tells it.")
    ok: int | None
    fail: int | None
    suspended: bool | None = Field(
        description="Its attempt stopped cleanly at a checkpoint: the next run resumes it."
    )
    checkpointed_at: str | None = Field(description="When its progress was last written.")
    holder: str | None = Field(description="Who runs it now: its lease's holder while live.")
    lease_expires_at: str | None = Field(description="Until when that holder has it.")
    last_message: str | None = Field(description="The message of its last history entry.")
    error: str | SkipJsonSchema[None] = sometimes("Why one of the shard's objects cannot be read.")


def fanout_info(view: FanoutView) -> FanoutInfo:
    return FanoutInfo(
        plan_id=view.plan.plan_id,
        shards=len(view.shards),
        ended=view.ended,
        detailed=view.detailed,
        statuses=view.statuses() if view.detailed else None,
        done=view.sum_of("done"),
        total=view.total,
        ok=view.sum_of("ok"),
        fail=view.sum_of("fail"),
        live_holders=view.live_holders,
    )


def _row(shard: ShardView, detailed: bool) -> ShardRow:
    state, progress = shard.state, shard.progress
    return ShardRow(
        id=shard.id,
        ended=shard.ended,
        status=shard.status(detailed),
        attempts=state.attempts if state is not None else (0 if detailed else None),
        done=shard.done,
        total=shard.total,
        ok=shard.ok,
        fail=shard.fail,
        suspended=shard.suspended if detailed else None,
        checkpointed_at=progress.checkpointed_at if progress is not None else None,
        holder=shard.holder,
        lease_expires_at=shard.lease.expires_at if shard.holder and shard.lease else None,
        last_message=shard.last_message or None,
        error=shard.error,
    )


def shard_rows(view: FanoutView) -> list[ShardRow]:
    """Every shard, in plan order (JSON output is not bounded: it is for programs)."""
    return [_row(s, view.detailed) for s in view.shards]
