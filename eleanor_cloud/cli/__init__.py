"""The ``eleanor-cloud`` command line: inspect, run and repair checkpointed tasks.

Commands (``eleanor-cloud COMMAND --help`` for each)::

    demo                       run the bundled example task (--crash-at STAGE, then resume)
    run MODULE:FACTORY --task-id ID [--time-budget S]   run or resume your own task
    tasks [--status S] [--limit N] [--after ID]          list tasks, a page at a time
    status TASK                stages, attempts, results, and the lease
    history TASK [STAGE]       every recorded run of the task's stages
    cancel TASK                cancel a task (a running holder stops at its next write)
    retry TASK                 move ERROR stages back to RETRY with a fresh budget
    rollback TASK --to STAGE   reset STAGE and later stages (--factory: call rollback())
    delete TASK                delete every object of the task (asks unless --yes)
    lease TASK [--break]       show the lease, or break it (asks unless --yes)

The store is ``--store URL``, else ``$ELEANOR_STORE``, else the local directory
``./.eleanor``. Read commands take ``--json``: the shapes are documented in
:mod:`eleanor_cloud.cli.shapes` and carry a ``"schema"`` version key.

Exit codes: 0 success; 1 the task failed or was canceled, was not found, or the store
refused or failed an operation; 2 usage error (bad arguments, task id, store URL, or a
missing optional dependency); 3 ``run``/``demo`` stopped by its time budget with work
left (resume it by running again); 75/76 ``run`` stopped by SIGTERM/SIGINT (the
container runner, :mod:`eleanor_cloud.aws.runner`: 75 at a stage boundary, 76 mid-stage
with the attempt recorded as interrupted; run again to resume); 130 any other command
interrupted by Ctrl-C.

Importing this package is cheap: click is imported by :func:`main`, and rich, the
engine and the backends only by the commands that need them.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "EXIT_BUDGET",
    "EXIT_FAILED",
    "EXIT_KEYBOARD_INTERRUPT",
    "EXIT_OK",
    "EXIT_USAGE",
    "main",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_BUDGET = 3
EXIT_KEYBOARD_INTERRUPT = 130


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point (``eleanor-cloud``); exits the process."""
    from eleanor_cloud.cli.app import cli

    cli.main(args=list(argv) if argv is not None else None, prog_name="eleanor-cloud")
