"""``eleanor-cloud index rebuild``: make the task index agree with the task states.

The engine keeps the index as tasks change status (see
:mod:`eleanor_cloud.engine.indexing`); this command is for a store written before the
index existed, an index deleted by hand or by a lifecycle rule, and the extras a crash
leaves (which ``tasks`` counts but, being a read command, never fixes).
"""

from __future__ import annotations

import click

from eleanor_cloud.cli.common import CliContext, json_option, pass_cli
from eleanor_cloud.cli.output import Output

__all__ = ["COMMANDS"]


@click.group("index")
def index_group() -> None:
    """Maintain the task index that 'tasks --status/--since' reads."""


@index_group.command("rebuild")
@click.option(
    "--grace",
    type=click.FloatRange(0),
    default=300.0,
    show_default=True,
    help="Seconds a wrong marker must have existed before it is removed (a younger "
    "one may be a running holder's mark, written just before its state write).",
)
@json_option
@pass_cli
def rebuild_cmd(state: CliContext, grace: float, as_json: bool) -> None:
    """Read every task, mark each in its status's partition, remove wrong markers.

    Costs a LIST of the task folders and of each status partition, the reads of every
    task, and a write only for what is wrong. Safe while tasks run.
    """
    from datetime import timedelta

    from eleanor_cloud.cli.task_list import RowVerify
    from eleanor_cloud.engine.task_index import rebuild_index

    out = Output(json_mode=as_json)
    report = rebuild_index(
        state.store, verify=RowVerify(state.store), grace=timedelta(seconds=grace)
    )
    if as_json:
        out.json_lines(
            [
                {
                    "schema": 1,
                    "kind": "index-rebuild",
                    "store": state.store_description,
                    "tasks": report.tasks,
                    "marked": report.marked,
                    "removed": report.removed,
                    "kept_young": report.kept_young,
                }
            ]
        )
        return
    out.line(
        f"index of {state.store_description}: {report.tasks} tasks; "
        f"{report.marked} marker(s) written, {report.removed} removed"
        + (f", {report.kept_young} younger than {grace:g}s kept" if report.kept_young else "")
    )


COMMANDS = (index_group,)
