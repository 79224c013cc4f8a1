"""``python -m eleanor_cloud.aws MODULE:FACTORY --task-id ID``: the container runner.

The same as ``eleanor-cloud run`` for images that do not install the CLI extra (no
click, no rich): the factory is ``callable(task_id, store) -> TaskEngine``, the store is
``--store`` or ``$ELEANOR_STORE``. Exit codes: see :mod:`eleanor_cloud.aws.runner`.

``--stage STAGE`` runs one shard of that fanned-out stage instead: ``--shard ID``, or the
plan's shard at ``$AWS_BATCH_JOB_ARRAY_INDEX`` in a Batch array job; ``--plan-id`` (empty:
none) refuses another plan version. Bad shard input exits 2; see
:mod:`eleanor_cloud.aws.shard_runner`.
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
from eleanor_cloud.aws.shard_runner import ARRAY_INDEX_ENV

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
    parser.add_argument("--stage", default=None, help="run one shard of this fanned-out stage")
    parser.add_argument("--shard", default=None, help=f"the shard (else ${ARRAY_INDEX_ENV})")
    parser.add_argument("--plan-id", default=None, help="refuse a shard of another plan")
    args = parser.parse_args(argv)
    if not args.store:
        parser.error(f"no store: pass --store or set ${STORE_ENV}")
    array_index = os.environ.get(ARRAY_INDEX_ENV) if args.stage is not None else None
    if args.shard is not None and args.stage is None:
        parser.error("--shard needs --stage")
    if args.stage is not None and (args.shard is None) == (array_index is None):
        parser.error(f"--stage needs exactly one of --shard and ${ARRAY_INDEX_ENV}")
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
    if args.stage is not None:
        _run_shard(factory, task_id, store, args, array_index)
        return
    try:
        run_container(
            factory, task_id, store, grace_seconds=args.grace_seconds, time_budget=args.time_budget
        )
    except EleanorError as exc:
        print(f"eleanor_cloud.aws: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_FAILED) from None


def _run_shard(
    factory: Any, task_id: str, store: Any, args: argparse.Namespace, array_index: str | None
) -> None:
    from eleanor_cloud.aws.shard_runner import ShardRunner, resolve_shard
    from eleanor_cloud.errors import EleanorError, InvalidState

    def fail(exc: Exception, code: int) -> SystemExit:
        print(f"eleanor_cloud.aws: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return SystemExit(code)

    try:
        engine = factory(task_id, store)
        try:  # bad shard input is refused before anything runs: exit 2
            shard, plan_id = resolve_shard(
                engine,
                args.stage,
                shard=args.shard,
                array_index=array_index,
                plan_id=args.plan_id or None,
            )
        except InvalidState as exc:
            raise fail(exc, EXIT_USAGE) from None
        runner = ShardRunner(
            engine,
            args.stage,
            shard,
            plan_id=plan_id,
            grace_seconds=args.grace_seconds,
            time_budget=args.time_budget,
        )
        outcome = runner.run()
    except EleanorError as exc:
        raise fail(exc, EXIT_FAILED) from None
    outcome.exit()


if __name__ == "__main__":
    main()
