"""Commands that change a task: ``cancel``, ``retry``, ``rollback``, ``delete``, ``lease``.

State changes go through the engine's store-only operations, which write every stage
as a compare-and-swap and respect the lease, so the CLI never races a running holder
into a lost update.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from eleanor_cloud.cli.common import (
    CliContext,
    echo_err,
    fail,
    import_factory,
    json_option,
    pass_cli,
    validate_task_id_arg,
)
from eleanor_cloud.cli.escaping import printable
from eleanor_cloud.cli.exits import EXIT_USAGE
from eleanor_cloud.cli.output import Output
from eleanor_cloud.cli.render import render_lease, render_task

if TYPE_CHECKING:
    from eleanor_cloud.engine import TaskSummary
    from eleanor_cloud.store.records import Lease, Record
    from eleanor_cloud.store.state_store import StateStore

__all__ = ["COMMANDS", "break_lease"]


def break_lease(store: StateStore, record: Record[Lease]) -> Record[Lease]:
    """Mark the lease expired, as a compare-and-swap against the version read.

    Holder and epoch are kept: the next taker sees an *expired* (not released) lease,
    so it takes over with ``epoch + 1`` and fences the task, and the old holder, if it
    is alive after all, fails its next renewal (the version moved) and stops. A
    ``Conflict`` means the lease moved since it was read; nothing is written then.
    """
    from eleanor_cloud.cli.views import BROKEN_EXPIRY

    # The envelope's epoch is the lease's own: keep the higher of the two read, so
    # takers computing max(epochs) + 1 agree with the holder.
    broken = record.value.model_copy(
        update={"expires_at": BROKEN_EXPIRY, "epoch": max(record.epoch, record.value.epoch)}
    )
    return store.write_lease(broken, replaces=record)


def _show_after(
    state: CliContext, out: Output, task_id: str, action: str, changed: list[str]
) -> None:
    from eleanor_cloud.cli.shapes import task_doc
    from eleanor_cloud.cli.views import load_task_view

    view = load_task_view(state.store, task_id)
    if out.json_mode:
        out.json(task_doc(view, state.store_description, action=action, changed=changed))
    else:
        render_task(out, view)


def _statuses(state: CliContext, task_id: str) -> dict[str, str]:
    from eleanor_cloud.cli.views import load_task_view

    view = load_task_view(state.store, task_id, with_lease=False, with_progress=False)
    return {s.name: s.status.value for s in view.stages}


def _changed(before: dict[str, str], summary: TaskSummary) -> list[str]:
    """Stages whose status the command changed, in task order."""
    return [s.name for s in summary.stages if before.get(s.name) != s.status.value]


@click.command("cancel")
@click.argument("task_id", callback=validate_task_id_arg)
@json_option
@pass_cli
def cancel_cmd(state: CliContext, task_id: str, as_json: bool) -> None:
    """Cancel TASK_ID: its unfinished stages become CANCELED.

    A holder running it notices at its next write (or via ctx.cancelled) and stops.
    Canceling a task that already finished changes nothing and exits 0.
    """
    from eleanor_cloud.engine import cancel_task

    out = Output(json_mode=as_json)
    before = _statuses(state, task_id)
    changed = _changed(before, cancel_task(state.store, task_id))
    if changed:
        out.line(f"canceled task {task_id}: {', '.join(changed)} now CANCELED")
    else:
        out.line(
            f"task {task_id}: nothing to cancel (no stage is UNBOUND, CREATED, RUNNING or RETRY)"
        )
    _show_after(state, out, task_id, "cancel", changed)


@click.command("retry")
@click.argument("task_id", callback=validate_task_id_arg)
@json_option
@pass_cli
def retry_cmd(state: CliContext, task_id: str, as_json: bool) -> None:
    """Redrive TASK_ID: move its ERROR stages back to RETRY with a fresh attempt budget.

    Run the task again ('eleanor-cloud run' or your own host) to resume it. A task with
    no ERROR stage is left as it is (exit 0).
    """
    from eleanor_cloud.engine import retry_failed_task

    out = Output(json_mode=as_json)
    before = _statuses(state, task_id)
    changed = _changed(before, retry_failed_task(state.store, task_id))
    if changed:
        out.line(
            f"task {task_id}: {', '.join(changed)} moved from ERROR to RETRY with a "
            "fresh attempt budget; run the task again to resume it"
        )
    else:
        out.line(f"task {task_id}: nothing to retry (no stage is in ERROR)")
    _show_after(state, out, task_id, "retry", changed)


@click.command("rollback")
@click.argument("task_id", callback=validate_task_id_arg)
@click.option(
    "--to",
    "to_stage",
    required=True,
    metavar="STAGE",
    help="Reset this stage and every later one to CREATED.",
)
@click.option(
    "--factory",
    metavar="MODULE:FACTORY",
    help="Build the task's engine with this factory(task_id, store) and call each "
    "completed stage's rollback() too, last stage first.",
)
@json_option
@pass_cli
def rollback_cmd(
    state: CliContext, task_id: str, to_stage: str, factory: str | None, as_json: bool
) -> None:
    """Roll TASK_ID back to STAGE: reset it and the stages after it to CREATED.

    Without --factory only the stored states are reset (the stages' side effects stay);
    with it, their rollback() methods run first, in reverse order.
    """
    from eleanor_cloud.engine import rollback_task

    out = Output(json_mode=as_json)
    manifest = state.store.load_manifest(task_id)
    if to_stage not in manifest.stages:
        fail(
            f"task {task_id!r} has no stage {to_stage!r} (stages: {', '.join(manifest.stages)})",
            EXIT_USAGE,
        )
    before = _statuses(state, task_id)
    if factory is not None:
        build = import_factory(factory)
        engine = build(task_id, state.store)
        summary = engine.rollback(to_stage)
        how = "rollback() called on the completed stages, last first"
    else:
        summary = rollback_task(state.store, task_id, to_stage)
        how = "states only: no rollback() called, pass --factory for that"
    changed = _changed(before, summary)
    out.line(
        f"task {task_id}: rolled back to {to_stage} ({how}); reset to CREATED: "
        + (", ".join(changed) if changed else "none")
    )
    _show_after(state, out, task_id, "rollback", changed)


@click.command("delete")
@click.argument("task_id", callback=validate_task_id_arg)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@json_option
@pass_cli
def delete_cmd(state: CliContext, task_id: str, yes: bool, as_json: bool) -> None:
    """Delete TASK_ID safely (asks unless --yes).

    Takes the task's lease first, so a live holder is never deleted under (it refuses;
    a holder that looks dead is watched for one lease TTL, as any takeover), deletes
    every object but the lease and leaves the lease as a tombstone: epochs keep growing
    for the task id, so nothing a holder of the deleted task still writes is ever taken
    for the next task's state.
    """
    from eleanor_cloud.cli.views import LeaseView
    from eleanor_cloud.clock import utc_now

    out = Output(json_mode=as_json)
    store = state.store
    manifest = store.load_manifest(task_id)  # NotFound -> exit 1 with one line
    record = store.load_lease(task_id)
    if record is not None and LeaseView.of(record, utc_now()).live:
        echo_err(f"warning: task {task_id} has a live lease held by {record.value.holder}")
    if not yes:
        click.confirm(
            printable(
                f"Delete task {task_id} ({len(manifest.stages)} stages) from "
                f"{state.store_description}?"
            ),
            abort=True,
            err=True,
        )
    from eleanor_cloud.engine import delete_task

    count = delete_task(store, task_id)
    if as_json:
        from eleanor_cloud.cli.shapes import DeleteDoc

        out.json(DeleteDoc(store=state.store_description, task_id=task_id, deleted_objects=count))
    else:
        out.line(f"deleted task {task_id} ({count} objects)")


@click.command("lease")
@click.argument("task_id", callback=validate_task_id_arg)
@click.option(
    "--break",
    "break_",
    is_flag=True,
    help="Expire the lease now so another holder can take over. Asks unless --yes.",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@json_option
@pass_cli
def lease_cmd(state: CliContext, task_id: str, break_: bool, yes: bool, as_json: bool) -> None:
    """Show TASK_ID's lease (holder, epoch, expiry), or break it with --break.

    Breaking keeps the epoch: the next holder takes over with a higher one, which fences
    out the old holder if it is still alive. Break only a lease whose holder is gone.
    """
    from eleanor_cloud.cli.shapes import lease_doc
    from eleanor_cloud.cli.views import LeaseView
    from eleanor_cloud.clock import utc_now

    out = Output(json_mode=as_json)
    store = state.store
    store.load_manifest(task_id)  # an unknown task is "not found", not "no lease"
    record = store.load_lease(task_id)
    view = LeaseView.of(record, utc_now()) if record is not None else None
    if not break_:
        if as_json:
            out.json(lease_doc(task_id, view, state.store_description))
        else:
            render_lease(out, view)
        return
    if record is None or view is None:
        fail(f"task {task_id!r} has no lease to break")
    if view.lease.released or view.broken:
        out.line(
            "the lease is already "
            + ("released" if view.lease.released else "broken")
            + "; nothing to break"
        )
        if as_json:
            out.json(lease_doc(task_id, view, state.store_description))
        return
    if not yes:
        liveness = "live" if view.live else "expired"
        click.confirm(
            printable(
                f"Break the {liveness} lease of task {task_id} held by "
                f"{view.lease.holder} (epoch {view.epoch})? Only do this if that "
                "holder is gone."
            ),
            abort=True,
            err=True,
        )
    after = LeaseView.of(break_lease(store, record), utc_now())
    if as_json:
        out.json(lease_doc(task_id, after, state.store_description, broken=True))
    else:
        out.line(f"broke the lease of task {task_id} (was held by {view.lease.holder})")
        render_lease(out, after)


COMMANDS = (cancel_cmd, retry_cmd, rollback_cmd, delete_cmd, lease_cmd)
