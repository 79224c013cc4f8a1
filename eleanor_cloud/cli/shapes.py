"""The ``--json`` documents of the CLI: pydantic models with a published JSON Schema.

Every document is one JSON object with ``"schema": 1`` and a ``"kind"``: ``tasks``,
``task`` (``status``, and ``cancel``/``retry``/``rollback``/``run``/``demo``),
``history``, ``lease``, ``delete`` and ``check`` (:mod:`.check_doc`). Within a schema
version fields are only ever added, never renamed or removed (the schemas allow unknown
properties, so a consumer validating against an older file keeps working); a breaking
change bumps ``schema``.
Timestamps are UTC ISO-8601 strings ending in ``Z``; statuses are the seed's
``StageStatus`` values; absent values are ``null``, except the few fields a
document carries only in some commands, which are then left out.

``eleanor-cloud schema KIND`` prints a document's JSON Schema (draft 2020-12); the
same text is committed in ``eleanor_cloud/cli/schemas/KIND.json`` (a test keeps the
files equal to these models: regenerate them with ``make schemas``). The class
docstrings and field descriptions below are the schema's.

Importing this module builds nothing: ``defer_build`` leaves each model's validator to
its first use, so only the commands that print JSON pay for it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field
from pydantic.json_schema import SkipJsonSchema

from eleanor_cloud.cli.check_doc import CheckDoc
from eleanor_cloud.cli.documents import JSON_SCHEMA_DIALECT, SCHEMA
from eleanor_cloud.cli.documents import Document as _Document
from eleanor_cloud.cli.documents import Model as _Model
from eleanor_cloud.cli.documents import sometimes as _sometimes
from eleanor_cloud.cli.progress_doc import (
    CheckpointRow,
    StageProgress,
    checkpoint_rows,
    stage_progress,
)
from eleanor_cloud.cli.shard_doc import FanoutInfo, ShardRow, fanout_info, shard_rows
from eleanor_cloud.models import StageStatus

if TYPE_CHECKING:
    from eleanor_cloud.cli.views import LeaseView, StageView, TaskView

__all__ = [
    "DOCUMENTS",
    "SCHEMA",
    "CheckDoc",
    "CheckpointRow",
    "DeleteDoc",
    "FanoutInfo",
    "HistoryDoc",
    "HistoryRow",
    "LeaseDoc",
    "LeaseInfo",
    "ShardRow",
    "StageProgress",
    "StageRow",
    "TaskDoc",
    "TaskFilter",
    "TaskRow",
    "TasksDoc",
    "corrupt_row",
    "history_doc",
    "json_schema",
    "lease_doc",
    "lease_info",
    "schema_text",
    "stage_row",
    "task_doc",
    "task_row",
]


class LeaseInfo(_Model):
    """A task's lease; ``expired`` is judged by the CLI host's clock."""

    holder: str
    epoch: int
    acquired_at: str
    expires_at: str = Field(
        description="``1970-01-01T00:00:00.000000Z`` once broken with ``lease --break``."
    )
    ttl_seconds: float
    renewals: int
    released: bool
    expired: bool
    broken: bool = Field(description="Broken with ``eleanor-cloud lease --break``.")
    live: bool = Field(description="Held right now: neither released nor expired.")


class StageRow(_Model):
    """One stage of a task (``CREATED`` with no attempts when it has no object yet)."""

    name: str
    status: StageStatus
    attempts: int
    last_message: str | None = Field(description="The message of the last history entry.")
    last_run_seconds: float | None
    updated_at: str | None = Field(description="When the stage's object was last written.")
    revision: int | None
    writer: str | None = Field(description="Who last wrote the stage's object (``host/pid``).")
    result: Any = Field(description="The stage's result as stored (any JSON), or ``null``.")
    progress: StageProgress | None = Field(
        None, description="A records stage's progress (``ctx.records``); ``null`` for others."
    )
    progress_error: str | SkipJsonSchema[None] = _sometimes(
        "Why the stage's progress object (or fan-out plan) cannot be read (then "
        "``progress`` is ``null``)."
    )
    fanout: FanoutInfo | None = Field(
        None, description="A fanned-out stage's plan and counts; ``null`` for others."
    )
    shards: list[ShardRow] | None = Field(
        None, description="A fanned-out stage's shards in plan order; ``null`` for others."
    )


class TaskDoc(_Document):
    """A task's stages, result and lease (``status``, and commands that change a task)."""

    kind_name: ClassVar[str] = "task"
    commands: ClassVar[str] = "status, cancel, retry, rollback, run, demo"

    kind: Literal["task"] = "task"
    task_id: str
    status: StageStatus = Field(
        description="The task's overall status, derived from its stages' as the engine does."
    )
    done: bool = Field(description="COMPLETE, ERROR or CANCELED: a run would not advance it.")
    next_stage: str | None = Field(
        description="The stage a run would start or resume; ``null`` once done."
    )
    state_class: str = Field(
        description="The user's stage state class, as recorded in the manifest."
    )
    created_at: str
    updated_at: str
    stages: list[StageRow]
    result: Any = Field(
        description="The last stage's result: the task's result once COMPLETE, else ``null``."
    )
    lease: LeaseInfo | None
    action: Literal["cancel", "retry", "rollback", "run", "demo"] | SkipJsonSchema[None] = (
        _sometimes("The command that changed the task (absent for ``status``).")
    )
    changed: list[str] | SkipJsonSchema[None] = _sometimes(
        "``cancel``, ``retry``, ``rollback``: the stages whose status they changed, "
        "in task order (``[]`` for a no-op)."
    )
    exit_code: int | SkipJsonSchema[None] = _sometimes(
        "``run`` and ``demo``: the command's exit code."
    )


class TaskRow(_Model):
    """One task of the ``tasks`` list."""

    task_id: str
    status: StageStatus | Literal["CORRUPT"] = Field(
        description="``CORRUPT``: the task's objects cannot be decoded (see ``error``)."
    )
    current_stage: str | None = Field(
        description="The stage a run would start or resume, or the one that failed / was "
        "canceled; ``null`` when all are COMPLETE."
    )
    attempts: int = Field(description="The current stage's attempts.")
    total_attempts: int = Field(description="The sum of every stage's attempts.")
    stages: int
    created_at: str | None
    updated_at: str | None
    error: str | SkipJsonSchema[None] = _sometimes("Why a CORRUPT task cannot be read.")


class TaskFilter(_Model):
    """The listing's options, as given."""

    status: StageStatus | None
    after: str | None
    limit: int
    prefix: str | None = None
    since: str | None = Field(default=None, description="ISO-8601, UTC")


class TasksDoc(_Document):
    """A page of tasks in task-id order."""

    kind_name: ClassVar[str] = "tasks"
    commands: ClassVar[str] = "tasks"

    kind: Literal["tasks"] = "tasks"
    filter: TaskFilter
    tasks: list[TaskRow]
    next_after: str | None = Field(
        description="Not ``null``: there may be more tasks; pass it as ``--after`` for the "
        "next page."
    )


class HistoryRow(_Model):
    """One recorded run of a stage (the seed's history entry, and its stage)."""

    stage: str
    attempt: int
    begin_status: StageStatus
    end_status: StageStatus
    begin_ts: str
    end_ts: str
    run_time_seconds: float
    message: str


class HistoryDoc(_Document):
    """Every recorded run: in stage order, then in the order recorded."""

    kind_name: ClassVar[str] = "history"
    commands: ClassVar[str] = "history"

    kind: Literal["history"] = "history"
    task_id: str
    stage: str | None = Field(description="The one stage asked for, or ``null`` for all.")
    entries: list[HistoryRow]
    checkpoints: list[CheckpointRow] = Field(
        default_factory=list,
        description="Records stages: what each attempt's checkpoints did, in stage order "
        "then attempt order (an attempt in flight or suspended has no entry yet).",
    )


class LeaseDoc(_Document):
    """A task's lease (``null``: none), after ``--break`` when ``broken`` is true."""

    kind_name: ClassVar[str] = "lease"
    commands: ClassVar[str] = "lease"

    kind: Literal["lease"] = "lease"
    task_id: str
    lease: LeaseInfo | None
    broken: bool = Field(description="This command broke the lease.")


class DeleteDoc(_Document):
    """What ``delete`` removed."""

    kind_name: ClassVar[str] = "delete"
    commands: ClassVar[str] = "delete"

    kind: Literal["delete"] = "delete"
    task_id: str
    deleted_objects: int


DOCUMENTS: dict[str, type[_Document]] = {
    doc.kind_name: doc for doc in (TasksDoc, TaskDoc, HistoryDoc, LeaseDoc, DeleteDoc, CheckDoc)
}


def json_schema(kind: str) -> dict[str, Any]:
    """The JSON Schema of the document ``kind`` (what ``--json`` prints, so the
    serialization side: fields left out when unset are not required)."""
    model = DOCUMENTS[kind]
    schema = model.model_json_schema(mode="serialization")
    return {"$schema": JSON_SCHEMA_DIALECT, **schema}


def schema_text(kind: str) -> str:
    """:func:`json_schema` as the committed files spell it."""
    return json.dumps(json_schema(kind), indent=2, ensure_ascii=False) + "\n"


def lease_info(lease: LeaseView | None) -> LeaseInfo | None:
    """A lease for a document (``None`` when the task has no lease object)."""
    if lease is None:
        return None
    value = lease.lease
    return LeaseInfo(
        holder=value.holder,
        epoch=value.epoch,
        acquired_at=value.acquired_at,
        expires_at=value.expires_at,
        ttl_seconds=value.ttl_seconds,
        renewals=value.renewals,
        released=value.released,
        expired=lease.expired,
        broken=lease.broken,
        live=lease.live,
    )


def stage_row(stage: StageView) -> StageRow:
    return StageRow(
        name=stage.name,
        status=stage.status,
        attempts=stage.attempts,
        last_message=stage.last_message or None,
        last_run_seconds=stage.last_run_seconds,
        updated_at=stage.updated_at,
        revision=stage.revision,
        writer=stage.writer,
        result=stage.result,
        progress=stage_progress(stage.progress) if stage.progress is not None else None,
        progress_error=stage.progress_error,
        fanout=fanout_info(stage.fanout) if stage.fanout is not None else None,
        shards=shard_rows(stage.fanout) if stage.fanout is not None else None,
    )


def task_doc(
    view: TaskView,
    store: str,
    *,
    action: str | None = None,
    changed: list[str] | None = None,
    exit_code: int | None = None,
) -> TaskDoc:
    """The ``task`` document (``status``, and the commands that change a task)."""
    return TaskDoc.model_validate(
        {
            "store": store,
            "task_id": view.task_id,
            "status": view.status,
            "done": view.done,
            "next_stage": view.next_stage,
            "state_class": view.manifest.state_class,
            "created_at": view.manifest.created_at,
            "updated_at": view.updated_at,
            "stages": [stage_row(s) for s in view.stages],
            "result": view.result,
            "lease": lease_info(view.lease),
            "action": action,
            "changed": changed,
            "exit_code": exit_code,
        }
    )


def task_row(view: TaskView) -> TaskRow:
    """One row of the ``tasks`` document."""
    current = view.current
    return TaskRow(
        task_id=view.task_id,
        status=view.status,
        current_stage=current.name if current else None,
        attempts=current.attempts if current else 0,
        total_attempts=view.attempts,
        stages=len(view.stages),
        created_at=view.manifest.created_at,
        updated_at=view.updated_at,
    )


def corrupt_row(task_id: str, error: str) -> TaskRow:
    """The row of a task whose objects cannot be decoded: listed, not a failed list."""
    return TaskRow(
        task_id=task_id,
        status="CORRUPT",
        current_stage=None,
        attempts=0,
        total_attempts=0,
        stages=0,
        created_at=None,
        updated_at=None,
        error=error,
    )


def history_doc(view: TaskView, store: str, stage: str | None) -> HistoryDoc:
    """The ``history`` document: every run of one stage or of all stages."""
    shown = [one for one in view.stages if stage is None or one.name == stage]
    entries = [
        HistoryRow(stage=one.name, **entry.model_dump()) for one in shown for entry in one.history
    ]
    checkpoints = [row for one in shown for row in checkpoint_rows(one)]
    return HistoryDoc(
        store=store, task_id=view.task_id, stage=stage, entries=entries, checkpoints=checkpoints
    )


def lease_doc(
    task_id: str, lease: LeaseView | None, store: str, *, broken: bool = False
) -> LeaseDoc:
    """The ``lease`` document."""
    return LeaseDoc(store=store, task_id=task_id, lease=lease_info(lease), broken=broken)
