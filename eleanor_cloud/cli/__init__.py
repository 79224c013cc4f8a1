"""The ``eleanor-cloud`` command line: inspect, run and repair checkpointed tasks.

Commands (``eleanor-cloud COMMAND --help`` for each)::

    demo                       run the bundled example task (--crash-at STAGE, then resume)
    run MODULE:FACTORY --task-id ID [--time-budget S] [--workers N]   run or resume your
                               own task (--workers: a fanned-out stage's shards, here)
    tasks [--status S] [--limit N] [--after ID]          list tasks, a page at a time
    status TASK [--shards]     stages, attempts, results, records progress, shards, lease
    history TASK [STAGE]       every recorded run of the task's stages (and checkpoints)
    failed TASK STAGE          a records stage's failed ids (--jsonl, --limit N)
    cancel TASK                cancel a task (a running holder stops at its next write)
    retry TASK                 move ERROR stages back to RETRY with a fresh budget
    rollback TASK --to STAGE   reset STAGE and later stages (--factory: call rollback())
    delete TASK                delete every object of the task (asks unless --yes)
    lease TASK [--break]       show the lease, or break it (asks unless --yes)
    schema [KIND]              the JSON Schema of a --json document (or the list of kinds)
    check [--store URL]        does the store honour conditional writes; what may we do
    ui [--host H] [--port P]   a read-only web dashboard on 127.0.0.1 (extra [ui])

The store is ``--store URL``, else ``$ELEANOR_STORE``, else the local directory
``./.eleanor``. Read commands take ``--json``: one document each, a pydantic model
in :mod:`eleanor_cloud.cli.shapes` with a ``"schema"`` version key, whose JSON Schema
``eleanor-cloud schema KIND`` prints (committed in ``eleanor_cloud/cli/schemas/``).

Exit codes: 0 success; 1 the task failed or was canceled, was not found, or the store
refused or failed an operation (``check``: a check failed); 2 usage error (bad
arguments, task id, store URL, or a missing optional dependency); 3 ``run``/``demo``
stopped by its time budget with work left (resume it by running again); 75/76 ``run``
stopped by SIGTERM/SIGINT (the container runner, :mod:`eleanor_cloud.aws.runner`: 75 at
a stage boundary, 76 mid-stage with the attempt recorded as interrupted; ``run
--workers N``: 75 after SIGINT/SIGTERM, the shards checkpointed at a batch boundary,
:mod:`eleanor_cloud.cli.workers`; run again to resume); 130 any other command
interrupted by Ctrl-C, or ``run --workers`` by a second one.

Importing this package is cheap: click is imported by :func:`main`, and rich, the
engine and the backends only by the commands that need them. Without the ``cli``
extra (click, rich) :func:`main` prints how to install it and exits 2.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from eleanor_cloud.cli.exits import (
    EXIT_BUDGET,
    EXIT_FAILED,
    EXIT_KEYBOARD_INTERRUPT,
    EXIT_OK,
    EXIT_USAGE,
    missing_extra_message,
)

__all__ = [
    "EXIT_BUDGET",
    "EXIT_FAILED",
    "EXIT_KEYBOARD_INTERRUPT",
    "EXIT_OK",
    "EXIT_USAGE",
    "main",
]


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point (``eleanor-cloud``); exits the process."""
    try:
        from eleanor_cloud.cli.app import cli
    except ModuleNotFoundError as exc:
        # The console script is installed without the ``cli`` extra too (scripts are
        # not per-extra): say what to install instead of showing a traceback.
        hint = missing_extra_message(exc)
        if hint is None:
            raise
        sys.stderr.write(hint + "\n")
        raise SystemExit(EXIT_USAGE) from None
    cli.main(args=list(argv) if argv is not None else None, prog_name="eleanor-cloud")
