"""The races' workers: module level, so they pickle under the spawn start method."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from typing import Any

from eleanor_cloud.backends.base import CREATE
from eleanor_cloud.errors import AlreadyExists, Conflict
from eleanor_cloud.store.state_store import StateStore
from eleanor_cloud.testing.conformance._base import PREFIX, BackendFactory, CounterState

__all__ = ["create_worker", "increment", "increment_worker", "run_processes"]


def create_worker(
    factory: BackendFactory, key: str, data: bytes, barrier: Any, results: Any
) -> None:
    """One contender of a create race in its own process: reports won, lost or error."""
    backend = factory()
    barrier.wait(timeout=60)
    try:
        backend.write(key, data, CREATE)
    except AlreadyExists:
        results.put(("lost", data))
    except Exception as exc:  # noqa: BLE001 - reported to the parent as a failure
        results.put(("error", repr(exc).encode()))
    else:
        results.put(("won", data))


def increment(store: StateStore, task_id: str, times: int) -> int:
    """Load-increment-save ``times`` times, retrying conflicts; return conflicts seen.

    A conflict carries the record now stored, so the retry starts from it without a
    read (as a caller following the store's advice does); when it does not, one load.
    """
    conflicts = 0
    done = 0
    record = store.load_record(task_id, "counter", CounterState)
    while done < times:
        changed = record.value.model_copy(update={"count": record.value.count + 1})
        try:
            record = store.save(changed, replaces=record)
        except Conflict as exc:
            conflicts += 1
            current = exc.current
            record = (
                current
                if current is not None
                else store.load_record(task_id, "counter", CounterState)
            )
            continue
        done += 1
    return conflicts


def increment_worker(
    factory: BackendFactory, task_id: str, times: int, barrier: Any, results: Any
) -> None:
    """One contender of a compare-and-swap race in its own process, with its own store."""
    store = StateStore(factory(), PREFIX)
    barrier.wait(timeout=60)
    try:
        results.put(("ok", increment(store, task_id, times)))
    except Exception as exc:  # noqa: BLE001 - reported to the parent as a failure
        results.put(("error", repr(exc)))


def run_processes(
    target: Callable[..., None], args_list: list[tuple[Any, ...]], timeout: float
) -> list[tuple[str, Any]]:
    """Start one spawned process per argument tuple behind one barrier; collect results."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(args_list))
    results = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, barrier, results)) for args in args_list]
    for proc in procs:
        proc.start()
    try:
        out = [results.get(timeout=timeout) for _ in procs]
    finally:
        for proc in procs:
            proc.join(timeout=timeout)
            if proc.is_alive():
                proc.kill()
    return out
