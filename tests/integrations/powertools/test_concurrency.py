"""Concurrent duplicates: exactly one runs, in threads and in real processes; expired
records taken over by exactly one of several; a completion after a takeover is refused."""

from __future__ import annotations

import multiprocessing as mp
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyPersistenceLayerError,
)

import eleanor_cloud as ec
from eleanor_cloud.integrations.powertools import ObjectStorePersistenceLayer, RecordTakenOver
from tests.integrations.powertools.conftest import FakeClock, LambdaContext

WAIT = 20.0  # a bound on every wait, so a bug fails the test instead of hanging it
N = 6


def blocking_handler(layer: ObjectStorePersistenceLayer, release: Any, started: Any) -> Any:
    @idempotent(persistence_store=layer, config=IdempotencyConfig(event_key_jmespath="order"))
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        started.set()
        if not release.wait(WAIT):
            raise RuntimeError("never released")
        return {"ran": event["who"]}

    return handler


def test_concurrent_threads_exactly_one_runs(layer: ObjectStorePersistenceLayer) -> None:
    release, started = threading.Event(), threading.Event()
    handler = blocking_handler(layer, release, started)
    barrier = threading.Barrier(N)
    refused: list[int] = []
    lock = threading.Lock()

    def call(who: int) -> Any:
        barrier.wait(WAIT)
        try:
            return handler({"order": "o-1", "who": who}, LambdaContext())
        except IdempotencyAlreadyInProgressError:
            with lock:
                refused.append(who)
                if len(refused) == N - 1:
                    release.set()  # every duplicate has been turned away: finish
            return None

    with ThreadPoolExecutor(N) as pool:
        results = list(pool.map(call, range(N)))
    ran = [r for r in results if r is not None]
    assert len(ran) == 1 and len(refused) == N - 1
    # Afterwards, every call gets the one stored result.
    assert handler({"order": "o-1", "who": 99}, LambdaContext()) == ran[0]


def _process_call(url: str, options: dict[str, Any], barrier: Any, release: Any, out: Any) -> None:
    started = mp.Event()  # unused across processes: the release is the parent's
    layer = ObjectStorePersistenceLayer(url, **options)
    handler = blocking_handler(layer, release, started)
    barrier.wait(WAIT)
    try:
        result = handler({"order": "o-1", "who": mp.current_process().name}, LambdaContext())
        out.put(("ran", result["ran"]))
    except IdempotencyAlreadyInProgressError:
        out.put(("refused", None))


@pytest.mark.parametrize("where", ["s3", "dir"])
def test_concurrent_processes_exactly_one_runs(
    where: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if where == "s3":
        store: ec.StateStore = request.getfixturevalue("s3_store")
        bucket = store.backend.description.removeprefix("s3://")
        url = f"s3://{bucket}/idem"
        options = {"endpoint_url": request.getfixturevalue("moto_server_url")}
    else:
        url, options = str(tmp_path / "store"), {}
    ctx = mp.get_context("fork")
    barrier, release, out = ctx.Barrier(N), ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_process_call, args=(url, options, barrier, release, out))
        for _ in range(N)
    ]
    for proc in procs:
        proc.start()
    try:
        outcomes = [out.get(timeout=WAIT) for _ in range(N - 1)]
        assert [kind for kind, _ in outcomes] == ["refused"] * (N - 1)
        release.set()
        outcomes.append(out.get(timeout=WAIT))
    finally:
        release.set()
        for proc in procs:
            proc.join(WAIT)
    assert outcomes[-1][0] == "ran"
    assert all(proc.exitcode == 0 for proc in procs)


def test_an_expired_record_is_taken_over_by_exactly_one(
    layer: ObjectStorePersistenceLayer, clock: FakeClock
) -> None:
    runs: list[int] = []
    config = IdempotencyConfig(event_key_jmespath="order", expires_after_seconds=10)

    @idempotent(persistence_store=layer, config=config)
    def first(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"ran": "first"}

    first({"order": "o-1"}, LambdaContext())
    clock.advance(30)
    release, started = threading.Event(), threading.Event()
    handler = blocking_handler(layer, release, started)
    barrier = threading.Barrier(N)
    refused: list[int] = []
    lock = threading.Lock()

    def call(who: int) -> Any:
        barrier.wait(WAIT)
        try:
            result = handler({"order": "o-1", "who": who}, LambdaContext())
            runs.append(who)
            return result
        except IdempotencyAlreadyInProgressError:
            with lock:
                refused.append(who)
                if len(refused) == N - 1:
                    release.set()
            return None

    with ThreadPoolExecutor(N) as pool:
        list(pool.map(call, range(N)))
    assert len(runs) == 1 and len(refused) == N - 1


def test_a_completion_after_a_takeover_is_refused(
    layer: ObjectStorePersistenceLayer, clock: FakeClock
) -> None:
    """A slow call whose in-progress expiry passed loses its record to a new call; its
    completion must not overwrite the new call's record."""
    release, started = threading.Event(), threading.Event()
    slow = blocking_handler(layer, release, started)
    outcome: list[BaseException] = []

    def slow_call() -> None:
        try:
            slow({"order": "o-1", "who": "slow"}, LambdaContext(remaining_ms=1_000))
        except IdempotencyPersistenceLayerError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=slow_call)
    thread.start()
    assert started.wait(WAIT)
    clock.advance(2)  # the slow call's Lambda would have timed out by now

    @idempotent(persistence_store=layer, config=IdempotencyConfig(event_key_jmespath="order"))
    def fresh(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"ran": "fresh"}

    assert fresh({"order": "o-1"}, LambdaContext()) == {"ran": "fresh"}
    release.set()
    thread.join(WAIT)
    assert len(outcome) == 1 and isinstance(outcome[0].__cause__, RecordTakenOver)
    assert "took it over" in str(outcome[0].__cause__)
    assert fresh({"order": "o-1"}, LambdaContext()) == {"ran": "fresh"}  # still theirs
