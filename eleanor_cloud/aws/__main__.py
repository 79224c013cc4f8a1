"""``python -m eleanor_cloud.aws MODULE:FACTORY --task-id ID``: the container runner.

The same as ``eleanor-cloud run`` for images that do not install the CLI extra (no
click, no rich): the factory is ``callable(task_id, store) -> TaskEngine``, the store is
``--store`` or ``$ELEANOR_STORE``. Exit codes: see :mod:`eleanor_cloud.aws.runner`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from eleanor_cloud.aws.env import STORE_ENV
from eleanor_cloud.aws.runner import EXIT_FAILED, run_container

EXIT_USAGE = 2


def _import_factory(spec: str) -> Any:
    module_name, sep, attr_path = spec.partition(":")
    if not sep or not module_name or not attr_path:
        raise SystemExit(f"eleanor_cloud.aws: factory {spec!r} is not MODULE:FACTORY")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` would: a module next to the user
    obj: Any = importlib.import_module(module_name)
    for part in attr_path.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise SystemExit(f"eleanor_cloud.aws: factory {spec!r} is not callable")
    return obj


def main(argv: Sequence[str] | None = None) -> None:
    """Parse arguments, run the task under the container runner, exit with its code."""
    parser = argparse.ArgumentParser(
        prog="python -m eleanor_cloud.aws",
        description="Run or resume one task; on SIGTERM finish the stage within the "
        "grace period or record it as interrupted (exit 75/76).",
    )
    parser.add_argument("factory", metavar="MODULE:FACTORY")
    parser.add_argument("--task-id", required=True)
    parser.add_argument(
        "--store", default=os.environ.get(STORE_ENV), help=f"store URL (default ${STORE_ENV})"
    )
    parser.add_argument("--grace-seconds", type=float, default=None)
    parser.add_argument("--time-budget", type=float, default=None)
    args = parser.parse_args(argv)
    if not args.store:
        parser.error(f"no store: pass --store or set ${STORE_ENV}")
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    from eleanor_cloud.errors import EleanorError
    from eleanor_cloud.keys import validate_task_id
    from eleanor_cloud.store.registry import open_store

    try:
        task_id = validate_task_id(args.task_id)
        store = open_store(args.store)
        factory = _import_factory(args.factory)
    except (EleanorError, ImportError, AttributeError) as exc:
        print(f"eleanor_cloud.aws: error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
    try:
        run_container(
            factory, task_id, store, grace_seconds=args.grace_seconds, time_budget=args.time_budget
        )
    except EleanorError as exc:
        print(f"eleanor_cloud.aws: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_FAILED) from None


if __name__ == "__main__":
    main()
