"""Read commands: ``tasks``, ``status``, ``history``, ``failed`` and ``schema``. They never
write."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import click

from eleanor_cloud.cli.common import (
    CliContext,
    echo_err,
    fail,
    json_option,
    pass_cli,
    validate_task_id_arg,
)
from eleanor_cloud.cli.exits import EXIT_FAILED, EXIT_USAGE
from eleanor_cloud.cli.output import Output
from eleanor_cloud.cli.render import checkpoint_line, render_task, seconds, short_ts

if TYPE_CHECKING:
    from eleanor_cloud.cli.views import TaskView

__all__ = ["COMMANDS"]

_STATUSES = ["UNBOUND", "CREATED", "RUNNING", "RETRY", "ERROR", "COMPLETE", "CANCELED"]
# The documents, by kind (eleanor_cloud.cli.shapes.DOCUMENTS, spelled out so that
# --help, which builds this choice, does not import pydantic).
_KINDS = ["tasks", "task", "history", "lease", "delete", "check"]


def load_view(state: CliContext, task_id: str, *, with_shards: bool = False) -> TaskView:
    from eleanor_cloud.cli.views import load_task_view

    return load_task_view(state.store, task_id, with_shards=with_shards)


@click.command("status")
@click.argument("task_id", callback=validate_task_id_arg)
@click.option(
    "--shards",
    "with_shards",
    is_flag=True,
    help="Read each shard of a fanned-out stage: status, records, holder (3 GETs a shard).",
)
@json_option
@pass_cli
def status_cmd(state: CliContext, task_id: str, with_shards: bool, as_json: bool) -> None:
    """Show TASK_ID's stages (status, attempts, last run, message, result) and lease.

    A fanned-out stage also shows how many of its shards ended (its plan and one LIST
    of its done/ markers); --shards reads every shard (state, progress and lease: 3
    GETs each) and lists them, the unfinished first, at most 50 (all with --json).
    Exits 1 when the task is in ERROR or CANCELED, so scripts can test it.
    """
    from eleanor_cloud.cli.shapes import task_doc
    from eleanor_cloud.models import StageStatus

    out = Output(json_mode=as_json)
    view = load_view(state, task_id, with_shards=with_shards)
    if as_json:
        out.json(task_doc(view, state.store_description))
    else:
        render_task(out, view)
    if view.status in (StageStatus.ERROR, StageStatus.CANCELED):
        raise click.exceptions.Exit(EXIT_FAILED)


@click.command("tasks")
@click.option(
    "--status",
    "status_filter",
    type=click.Choice(_STATUSES, case_sensitive=False),
    help="Only tasks whose overall status is this.",
)
@click.option(
    "--limit",
    type=click.IntRange(1, 10_000),
    default=50,
    show_default=True,
    help="At most this many tasks.",
)
@click.option(
    "--after",
    metavar="TASK_ID",
    callback=validate_task_id_arg,
    help="Start after this task id (the previous page's last id).",
)
@click.option("--prefix", default="", metavar="TEXT", help="Only task ids starting with this.")
@click.option(
    "--since",
    metavar="WHEN",
    help="Only tasks whose status changed since then: 30m, 12h, 2d, 1w or an ISO time.",
)
@click.option(
    "--scan",
    is_flag=True,
    help="Filter by reading every task instead of the task index (a store written "
    "before the index; or see 'eleanor-cloud index rebuild').",
)
@json_option
@pass_cli
def tasks_cmd(
    state: CliContext,
    status_filter: str | None,
    limit: int,
    after: str | None,
    prefix: str,
    since: str | None,
    scan: bool,
    as_json: bool,
) -> None:
    """List tasks with overall status, current stage, its attempts and last update.

    Task ids come in lexicographic order. With --status (and --since) only the task
    index's partition of that status is listed and only its tasks are read, so the
    cost follows the matches, not the store; each listed task is checked against its
    states, so the index can never make a row lie. The last line says how to get the
    next page.
    """
    from eleanor_cloud.cli.task_list import parse_since, task_rows
    from eleanor_cloud.models import StageStatus

    out = Output(json_mode=as_json)
    wanted = status_filter.upper() if status_filter else None
    if wanted in ("UNBOUND", "RETRY"):
        fail(f"--status {wanted}: no task has that overall status (a stage may)", EXIT_USAGE)
    if prefix and not re.fullmatch(r"[A-Za-z0-9._-]+", prefix):
        fail(
            f"--prefix {prefix!r}: task ids contain only letters, digits, '.', '_', '-'", EXIT_USAGE
        )
    try:
        since_at = parse_since(since) if since else None
    except ValueError as exc:
        fail(f"--since: {exc}", EXIT_USAGE)
    if scan and since_at is not None:
        fail("--since needs the task index: leave out --scan", EXIT_USAGE)
    found = task_rows(
        state.store,
        status=StageStatus(wanted) if wanted else None,
        after=after,
        limit=limit,
        prefix=prefix,
        since=since_at,
        scan=scan,
    )
    rows, next_after = found.rows, found.next_after
    if found.stale:
        echo_err(
            f"note: {found.stale} index entr{'y' if found.stale == 1 else 'ies'} did not "
            "match the task's state (left by a crash, or a status change in flight); "
            "'eleanor-cloud index rebuild' tidies them"
        )
    if as_json:
        from eleanor_cloud.cli.shapes import TaskFilter, TasksDoc

        out.json(
            TasksDoc.model_validate(
                {
                    "store": state.store_description,
                    "filter": TaskFilter.model_validate(
                        {
                            "status": wanted,
                            "after": after,
                            "limit": limit,
                            "prefix": prefix or None,
                            "since": since_at.isoformat() if since_at else None,
                        }
                    ),
                    "tasks": rows,
                    "next_after": next_after,
                }
            )
        )
        return
    if not rows:
        out.line(
            "no tasks"
            + (f" with status {wanted}" if wanted else "")
            + f" in {state.store_description}"
        )
        return
    out.table(
        ["TASK", "STATUS", "CURRENT STAGE", "ATTEMPTS", "UPDATED"],
        [
            [
                r.task_id,
                r.status if isinstance(r.status, str) else r.status.value,
                r.current_stage or "-",
                str(r.attempts),
                short_ts(r.updated_at),
            ]
            for r in rows
        ],
        status_column=1,
    )
    if next_after is not None:
        out.line(f"more tasks: eleanor-cloud tasks --after {next_after} --limit {limit}")


@click.command("history")
@click.argument("task_id", callback=validate_task_id_arg)
@click.argument("stage", required=False)
@json_option
@pass_cli
def history_cmd(state: CliContext, task_id: str, stage: str | None, as_json: bool) -> None:
    """Show the run history of TASK_ID (of one STAGE when given): one row per attempt.

    For a records stage, also what each attempt's checkpoints did (slices, checkpoints,
    batches, records, the last one's time), including an attempt still in flight.
    """
    from eleanor_cloud.cli.shapes import history_doc

    out = Output(json_mode=as_json)
    view = load_view(state, task_id)
    if stage is not None and stage not in view.manifest.stages:
        fail(
            f"task {task_id!r} has no stage {stage!r} (stages: {', '.join(view.manifest.stages)})",
            EXIT_FAILED,
        )
    doc = history_doc(view, state.store_description, stage)
    if as_json:
        out.json(doc)
        return
    if not doc.entries:
        out.line(f"no history yet for task {task_id}" + (f" stage {stage}" if stage else ""))
    else:
        out.table(
            ["STAGE", "ATTEMPT", "FROM", "TO", "BEGIN", "END", "RUN TIME", "MESSAGE"],
            [
                [
                    e.stage,
                    str(e.attempt),
                    e.begin_status.value,
                    e.end_status.value,
                    short_ts(e.begin_ts),
                    short_ts(e.end_ts),
                    seconds(e.run_time_seconds),
                    e.message,
                ]
                for e in doc.entries
            ],
            status_column=3,
        )
    if doc.checkpoints:
        out.line("checkpoints (records stages):")
        out.lines("  " + checkpoint_line(row) for row in doc.checkpoints)


def _one_line(text: str) -> str:
    """A stored id or reason kept on its line (printable() leaves newline and tab)."""
    return text.replace("\n", "\\n").replace("\t", "\\t")


def _reader_left() -> None:
    """``failed ... | head``: the reader has what it wanted. Stop quietly (exit 0), with
    stdout on /dev/null so the interpreter's last flush cannot fail again."""
    import os
    import sys

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    raise click.exceptions.Exit(0)


@click.command("failed")
@click.argument("task_id", callback=validate_task_id_arg)
@click.argument("stage")
@click.option(
    "--jsonl", "as_jsonl", is_flag=True, help='JSON Lines: {"id","status","reason","chunk"}.'
)
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="At most N ids.")
@pass_cli
def failed_cmd(
    state: CliContext, task_id: str, stage: str, as_jsonl: bool, limit: int | None
) -> None:
    """List (or export as JSON lines) the failed record ids of a records STAGE.

    The records whose latest outcome is error or unprocessed, as last checkpointed:
    those of the latest outcomes, then those the attempt's retry pass has still to
    re-offer. Read a chunk (up to 1,000 ids, one GET) at a time, so memory stays bounded
    whatever the count. Exits 1 for an unknown task or stage, or a stage with no
    record progress.
    """
    from itertools import islice

    from eleanor_cloud.cli.records_view import failed_ids, load_progress_views

    store = state.store
    manifest = store.load_manifest(task_id)
    if stage not in manifest.stages:
        fail(f"task {task_id!r} has no stage {stage!r} (stages: {', '.join(manifest.stages)})")
    lease = store.load_lease(task_id)
    found = load_progress_views(store, task_id, [stage], lease.value.floor if lease else 0)
    view = found.get(stage)
    if isinstance(view, str):
        fail(view)
    if view is None:
        fail(
            f"stage {stage!r} of task {task_id!r} has no record progress: it does not use "
            "ctx.records(), or has not checkpointed yet"
        )
    out, total = Output(), view.failed_ids
    shown = total if limit is None else min(limit, total)
    if not as_jsonl:
        dropped = view.progress.dropped_errors
        out.line(
            f"failed records of task {task_id} stage {stage}: {total:,}"
            + (f" (and {dropped:,} more errors counted whose ids were not kept)" if dropped else "")
        )
    rows = islice(failed_ids(store, task_id, stage, view.progress), shown)
    try:
        while chunk := list(islice(rows, 1000)):
            if as_jsonl:
                out.json_lines(row.as_json() for row in chunk)
            else:
                out.lines(
                    f"{_one_line(row.status):<11}  {_one_line(row.id)}"
                    + (f"  {_one_line(row.reason)}" if row.reason else "")
                    for row in chunk
                )
    except BrokenPipeError:
        _reader_left()
    if shown < total:
        note = f"showed {shown:,} of {total:,} failed ids (--limit)"
        if as_jsonl:
            echo_err(f"eleanor-cloud: {note}")
        else:
            out.line(note)


@click.command("schema")
@click.argument("kind", required=False, type=click.Choice(_KINDS))
def schema_cmd(kind: str | None) -> None:
    """Print the JSON Schema of the --json document KIND, or list the kinds.

    The schema is the published file (eleanor_cloud/cli/schemas/KIND.json, JSON Schema
    draft 2020-12). Documents only gain fields within a "schema" version: validate
    against it without forbidding unknown properties.
    """
    if kind is None:
        from eleanor_cloud.cli.shapes import DOCUMENTS

        out = Output()
        out.table(
            ["KIND", "PRINTED BY", "DESCRIPTION"],
            [[k, doc.commands, (doc.__doc__ or "").strip()] for k, doc in DOCUMENTS.items()],
        )
        return
    from importlib.resources import files

    try:
        text = files("eleanor_cloud.cli").joinpath("schemas", f"{kind}.json").read_text("utf-8")
    except FileNotFoundError:  # pragma: no cover - a broken install
        fail(f"the schema file of {kind!r} is missing from this installation", EXIT_USAGE)
    click.echo(text, nl=False)


COMMANDS = (tasks_cmd, status_cmd, history_cmd, failed_cmd, schema_cmd)
