"""Fan one records stage out over many workers: the plan, the shard documents, the join.

A stage that defines ``plan(state, ctx)`` is *sharded*. The task's holder plans it once
(the plan is written with Create: every worker sees the same plan, and planning again
after a crash cannot change it), marks the stage RUNNING and releases the task. Each
shard then runs on any worker under its own lease, with its own records progress and
attempts (:mod:`.shard_run`); a shard that ends leaves a marker under ``done/``. The
next run of the task that finds every marker joins: it sums the shards' counts into the
stage's ``SimpleRecordsResult`` and marks the stage COMPLETE, under the task's lease and
by compare-and-swap, so exactly one run joins.

Layout (under ``<prefix>/<task>/<stage>/``)::

    plan.json                     the shards: ids and specs (Create, once)
    shards/<id>/state.json        the shard's status, attempts, history, result
    shards/<id>/_lease.json       who runs the shard
    shards/<id>/progress.json     its records checkpoint; shards/<id>/failed/ its ids
    done/<id>.json                the shard ended: COMPLETE or ERROR, with its counts
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from eleanor_cloud import keys
from eleanor_cloud.errors import AlreadyExists, InvalidKey, InvalidState, NotFound
from eleanor_cloud.models import BaseStageState, SimpleRecordsResult, StageStatus
from eleanor_cloud.store.records import Record
from eleanor_cloud.store.state_store import StateStore

__all__ = [
    "MAX_SHARDS",
    "Done",
    "NotPlanned",
    "Plan",
    "Shard",
    "ShardState",
    "joined_result",
    "list_done",
    "load_plan",
    "write_plan",
]

MAX_SHARDS = 1000  # shards per stage: the plan stays under ~1.1 MB
SPEC_LIMIT = 1024  # bytes of one shard's spec as JSON
PLAN_FORMAT = "eleanor.shard-plan/1"
SHARD_FORMAT = "eleanor.shard-state/1"
DONE_FORMAT = "eleanor.shard-done/1"


class NotPlanned(InvalidState):
    """A shard was asked for of a stage that has no plan yet (run the task first)."""


@dataclass(frozen=True)
class Shard:
    """One part of a sharded stage's input: ``id`` (a safe segment) and a JSON ``spec``
    the stage defines (a key range, a list of input objects, a count)."""

    id: str
    spec: JsonValue = None


class PlannedShard(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    id: str
    spec: JsonValue = None


class Plan(BaseModel):
    """``<stage>/plan.json``: written once; ``plan_id`` tells one plan from another."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    task_id: str
    stage_name: str
    plan_id: str
    shards: tuple[PlannedShard, ...] = Field(min_length=1, max_length=MAX_SHARDS)

    def shard(self, shard_id: str) -> PlannedShard:
        for shard in self.shards:
            if shard.id == shard_id:
                return shard
        raise InvalidState(
            f"stage {self.stage_name!r} of task {self.task_id!r} has no shard {shard_id!r} "
            f"in plan {self.plan_id} ({len(self.shards)} shards)"
        )


class ShardState(BaseStageState[SimpleRecordsResult]):
    """``shards/<id>/state.json``: a shard's own status, attempts and history."""

    shard_id: str = ""


class Done(BaseModel):
    """``done/<id>.json``: a shard ended; what it counted (the join sums these)."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    shard_id: str
    status: StageStatus
    attempts: int = Field(ge=0)
    result: SimpleRecordsResult | None = None
    message: str = ""


def check_plan(task_id: str, stage_name: str, shards: object) -> Plan:
    """The plan a stage returned, refused with a clear error if it is not one."""
    where = f"stage {stage_name!r} of task {task_id!r}"
    if not isinstance(shards, Sequence) or isinstance(shards, str | bytes):
        raise InvalidState(f"{where}: plan() must return a list of Shard, got {shards!r}")
    if not shards:
        raise InvalidState(f"{where}: plan() returned no shards")
    if len(shards) > MAX_SHARDS:
        raise InvalidState(f"{where}: plan() returned {len(shards)} shards (at most {MAX_SHARDS})")
    seen: set[str] = set()
    out: list[PlannedShard] = []
    for shard in shards:
        if not isinstance(shard, Shard):
            raise InvalidState(f"{where}: plan() must return Shard objects, got {shard!r}")
        try:
            keys.validate_shard_id(shard.id)
        except InvalidKey as exc:
            raise InvalidState(f"{where}: bad shard id: {exc}") from exc
        if shard.id in seen:
            raise InvalidState(f"{where}: plan() returned shard id {shard.id!r} twice")
        seen.add(shard.id)
        planned = PlannedShard(id=shard.id, spec=shard.spec)
        if len(planned.model_dump_json()) > SPEC_LIMIT + len(shard.id) + 20:
            raise InvalidState(f"{where}: shard {shard.id!r}: spec over {SPEC_LIMIT} bytes of JSON")
        out.append(planned)
    return Plan(task_id=task_id, stage_name=stage_name, plan_id=uuid.uuid4().hex, shards=tuple(out))


def load_plan(store: StateStore, task_id: str, stage_name: str) -> Plan | None:
    key = keys.plan_key(store.prefix, task_id, stage_name)
    try:
        return store.read_document(key, PLAN_FORMAT, Plan.model_validate).value
    except NotFound:
        return None


def write_plan(store: StateStore, plan: Plan, *, epoch: int) -> Plan:
    """Create the plan; if one exists (a planner crashed after writing it), it wins."""
    key = keys.plan_key(store.prefix, plan.task_id, plan.stage_name)
    try:
        store.write_document(key, plan, PLAN_FORMAT, replaces=None, epoch=epoch)
    except AlreadyExists:
        existing = load_plan(store, plan.task_id, plan.stage_name)
        if existing is None:  # pragma: no cover - deleted between the two requests
            raise
        return existing
    return plan


def load_shard(
    store: StateStore, task_id: str, stage: str, shard: str
) -> Record[ShardState] | None:
    key = keys.shard_state_key(store.prefix, task_id, stage, shard)
    try:
        return store.read_document(key, SHARD_FORMAT, ShardState.model_validate)
    except NotFound:
        return None


def save_shard(
    store: StateStore, state: ShardState, *, replaces: Record[Any] | None, epoch: int
) -> Record[ShardState]:
    key = keys.shard_state_key(store.prefix, state.task_id, state.stage_name, state.shard_id)
    return store.write_document(key, state, SHARD_FORMAT, replaces=replaces, epoch=epoch)


def mark_done(store: StateStore, task_id: str, stage: str, done: Done, *, epoch: int) -> None:
    """Leave (or update) the shard's marker; a marker already saying the same stands."""
    key = keys.done_key(store.prefix, task_id, stage, done.shard_id)
    try:
        store.write_document(key, done, DONE_FORMAT, replaces=None, epoch=epoch)
    except AlreadyExists:
        current = store.read_document(key, DONE_FORMAT, Done.model_validate)
        if current.value != done:
            store.write_document(key, done, DONE_FORMAT, replaces=current, epoch=epoch)


def list_done(store: StateStore, task_id: str, stage: str) -> list[str]:
    """The shard ids with a marker: one LIST page per 1,000 shards."""
    prefix = keys.done_prefix(store.prefix, task_id, stage)
    return [k[len(prefix) : -len(keys.SUFFIX)] for k in store.backend.list(prefix)]


def read_done(store: StateStore, task_id: str, stage: str, shard: str) -> Done:
    key = keys.done_key(store.prefix, task_id, stage, shard)
    return store.read_document(key, DONE_FORMAT, Done.model_validate).value


def joined_result(done: Sequence[Done]) -> SimpleRecordsResult:
    """The stage's counts: the sum over its shards."""
    results = [d.result for d in done if d.result is not None]
    return SimpleRecordsResult(
        total_count=sum(r.total_count for r in results),
        success_count=sum(r.success_count for r in results),
        fail_count=sum(r.fail_count for r in results),
        unprocessed_count=sum(r.unprocessed_count for r in results),
        message=f"joined {len(done)} shards",
    )
