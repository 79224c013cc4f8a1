"""Run a fanned-out stage's shards on local worker processes (``run(workers=N)``).

The workers are forked from this process, so they share the engine's definition (stage
code included) without pickling it; each runs shards with ``run_shard`` under the
shard's own lease, exactly as a Lambda invocation or a container would. SIGINT in a
worker asks it to stop: its records run checkpoints at the next batch and it exits.
"""

from __future__ import annotations

import multiprocessing
import signal
from typing import Any

__all__ = ["run_shards"]

_ENGINE: Any = None  # the engine the forked workers inherit (set just before forking)


def _init() -> None:
    def stop(_signum: int, _frame: Any) -> None:
        _ENGINE.request_stop("interrupted (SIGINT)")

    signal.signal(signal.SIGINT, stop)
    # A backend with pooled connections must not share the parent's sockets.
    after_fork = getattr(_ENGINE.store.backend, "after_fork", None)
    if after_fork is not None:
        after_fork()


def _one(job: tuple[str, str, str | None]) -> dict[str, Any]:
    from eleanor_cloud.engine.options import default_holder

    stage_name, shard_id, plan_id = job
    # Each worker holds its shards under its own name (host/pid/random): an operator
    # can tell the workers apart in the shards' leases.
    summary = _ENGINE.run_shard(stage_name, shard_id, plan_id=plan_id, holder=default_holder())
    return dict(summary.to_dict())


def run_shards(
    engine: Any, stage_name: str, shard_ids: list[str], workers: int, plan_id: str | None
) -> list[dict[str, Any]]:
    """Every shard once, ``workers`` at a time; their summaries in plan order."""
    global _ENGINE  # noqa: PLW0603 - the one hand-over a fork allows
    _ENGINE = engine
    context = multiprocessing.get_context("fork")
    jobs = [(stage_name, sid, plan_id) for sid in shard_ids]
    try:
        with context.Pool(min(workers, len(jobs)), initializer=_init) as pool:
            return list(pool.map(_one, jobs, chunksize=1))
    finally:
        _ENGINE = None
