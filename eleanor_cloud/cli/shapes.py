"""The ``--json`` output of the CLI: stable shapes, versioned by ``"schema"``.

Every document is one JSON object with ``"schema": 1`` and a ``"kind"``. Within a
schema version fields are only ever added, never renamed or removed; a breaking change
bumps ``schema``. Timestamps are UTC ISO-8601 strings ending in ``Z``; statuses are
the seed's ``StageStatus`` values (``"COMPLETE"``, ``"ERROR"``, ...); absent values
are ``null``.

``tasks`` -> ``kind: "tasks"``::

    {"schema": 1, "kind": "tasks", "store": "file:///.../.eleanor",
     "filter": {"status": "ERROR" | null, "after": "task-id" | null, "limit": 50},
     "tasks": [{"task_id": "demo", "status": "RUNNING", "current_stage": "transform",
                "attempts": 2, "total_attempts": 4, "stages": 4,
                "created_at": "...Z", "updated_at": "...Z"}],
     "next_after": "demo" | null}

A task whose objects cannot be decoded is listed with ``"status": "CORRUPT"`` and an
``"error"`` string (when no ``--status`` filter is given) instead of failing the list.
``current_stage`` is the stage a run would start or resume, or for an ERROR/CANCELED
task the stage that failed / was canceled (``null`` when all are COMPLETE);
``attempts`` are that stage's, ``total_attempts`` the sum over stages. When
``next_after`` is not null there may be more tasks: pass it as ``--after``.

``status`` (also printed by ``cancel``, ``retry``, ``rollback``, ``run`` and ``demo``
with ``--json``) -> ``kind: "task"``::

    {"schema": 1, "kind": "task", "store": "...", "task_id": "demo",
     "status": "COMPLETE", "done": true, "next_stage": null,
     "state_class": "pkg.module.State", "created_at": "...Z", "updated_at": "...Z",
     "stages": [{"name": "generate", "status": "COMPLETE", "attempts": 1,
                 "last_message": "...", "last_run_seconds": 0.21,
                 "updated_at": "...Z", "revision": 3, "writer": "host/pid",
                 "result": {...} | null}],
     "result": {...} | null,
     "lease": null | {"holder": "host/pid/uuid", "epoch": 2, "acquired_at": "...Z",
                      "expires_at": "...Z", "ttl_seconds": 60.0, "renewals": 0,
                      "released": false, "expired": true, "broken": false,
                      "live": false}}

``lease.expired`` is judged by the CLI host's clock; ``broken`` means somebody ran
``eleanor-cloud lease --break`` (its ``expires_at`` is then ``1970-01-01T00:00:00Z``).

``result`` is the last stage's result (the task's result once COMPLETE, else ``null``).
``done`` is true once the task is COMPLETE, ERROR or CANCELED (``next_stage`` is then
``null``).
Commands that changed the task add ``"action"`` (``"cancel"``, ``"retry"``,
``"rollback"``, ``"run"``, ``"demo"``); ``cancel``, ``retry`` and ``rollback`` add
``"changed"`` (the stages whose status they changed, in task order; ``[]`` for a no-op);
``run`` and ``demo`` add ``"exit_code"``.

``history`` -> ``kind: "history"``::

    {"schema": 1, "kind": "history", "store": "...", "task_id": "demo",
     "stage": "transform" | null,
     "entries": [{"stage": "transform", "attempt": 1, "begin_status": "CREATED",
                  "end_status": "RETRY", "begin_ts": "...Z", "end_ts": "...Z",
                  "run_time_seconds": 2.5, "message": "..."}]}

Entries are in stage order, then in the order they were recorded.

``lease`` -> ``kind: "lease"``::

    {"schema": 1, "kind": "lease", "store": "...", "task_id": "demo",
     "lease": null | {...as in "task"...}, "broken": false}

``delete`` with ``--json`` -> ``{"schema": 1, "kind": "delete", "store": "...",
"task_id": "demo", "deleted_objects": 6}``.
"""

from __future__ import annotations

from typing import Any

from eleanor_cloud.cli.views import LeaseView, StageView, TaskView

__all__ = [
    "SCHEMA",
    "history_doc",
    "lease_doc",
    "lease_json",
    "stage_json",
    "task_doc",
    "task_row_json",
]

SCHEMA = 1


def _head(kind: str, store: str) -> dict[str, Any]:
    return {"schema": SCHEMA, "kind": kind, "store": store}


def lease_json(lease: LeaseView | None) -> dict[str, Any] | None:
    """A lease as JSON (``None`` when the task has no lease object)."""
    if lease is None:
        return None
    value = lease.lease
    return {
        "holder": value.holder,
        "epoch": value.epoch,
        "acquired_at": value.acquired_at,
        "expires_at": value.expires_at,
        "ttl_seconds": value.ttl_seconds,
        "renewals": value.renewals,
        "released": value.released,
        "expired": lease.expired,
        "broken": lease.broken,
        "live": lease.live,
    }


def stage_json(stage: StageView) -> dict[str, Any]:
    """One stage row of the ``task`` document."""
    return {
        "name": stage.name,
        "status": stage.status.value,
        "attempts": stage.attempts,
        "last_message": stage.last_message or None,
        "last_run_seconds": stage.last_run_seconds,
        "updated_at": stage.updated_at,
        "revision": stage.revision,
        "writer": stage.writer,
        "result": stage.result,
    }


def task_doc(
    view: TaskView, store: str, *, action: str | None = None, exit_code: int | None = None
) -> dict[str, Any]:
    """The ``task`` document (``status``, and the commands that change a task)."""
    doc = _head("task", store)
    doc.update(
        {
            "task_id": view.task_id,
            "status": view.status.value,
            "done": view.done,
            "next_stage": view.next_stage,
            "state_class": view.manifest.state_class,
            "created_at": view.manifest.created_at,
            "updated_at": view.updated_at,
            "stages": [stage_json(s) for s in view.stages],
            "result": view.result,
            "lease": lease_json(view.lease),
        }
    )
    if action is not None:
        doc["action"] = action
    if exit_code is not None:
        doc["exit_code"] = exit_code
    return doc


def task_row_json(view: TaskView) -> dict[str, Any]:
    """One row of the ``tasks`` document."""
    current = view.current
    return {
        "task_id": view.task_id,
        "status": view.status.value,
        "current_stage": current.name if current else None,
        "attempts": current.attempts if current else 0,
        "total_attempts": view.attempts,
        "stages": len(view.stages),
        "created_at": view.manifest.created_at,
        "updated_at": view.updated_at,
    }


def history_doc(view: TaskView, store: str, stage: str | None) -> dict[str, Any]:
    """The ``history`` document: every run of one stage or of all stages."""
    doc = _head("history", store)
    entries = []
    for one in view.stages:
        if stage is not None and one.name != stage:
            continue
        for entry in one.history:
            row: dict[str, Any] = {"stage": one.name}
            row.update(entry.model_dump(mode="json"))
            entries.append(row)
    doc.update({"task_id": view.task_id, "stage": stage, "entries": entries})
    return doc


def lease_doc(
    task_id: str, lease: LeaseView | None, store: str, *, broken: bool = False
) -> dict[str, Any]:
    """The ``lease`` document."""
    doc = _head("lease", store)
    doc.update({"task_id": task_id, "lease": lease_json(lease), "broken": broken})
    return doc
