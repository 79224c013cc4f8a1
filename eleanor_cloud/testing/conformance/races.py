"""Races: exactly one winner of a create, no lost update in a compare-and-swap, between
threads and (where the store is shared across processes) between processes."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from eleanor_cloud.backends.base import CREATE, ObjectBackend
from eleanor_cloud.errors import AlreadyExists
from eleanor_cloud.store.state_store import StateStore
from eleanor_cloud.testing.conformance._base import (
    PREFIX,
    BackendFactory,
    ContractBase,
    CounterState,
)
from eleanor_cloud.testing.conformance._workers import (
    create_worker,
    increment,
    increment_worker,
    run_processes,
)

__all__ = ["RaceContract"]

_PROCESS_RACES = ("test_create_race_processes_one_winner", "test_cas_race_processes_no_lost_update")


class RaceContract(ContractBase):
    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A store that lives in one process has no second process to race with: its
        # process races are not collected at all (its thread races still run).
        if not cls.shared_across_processes:
            for name in _PROCESS_RACES:
                if name not in cls.__dict__:
                    setattr(cls, name, None)

    def _factory(self, factory: BackendFactory | None) -> BackendFactory:
        assert factory is not None, (
            "shared_across_processes is True but the test class gives no backend_factory "
            "fixture: override it with a picklable callable opening a new backend over the "
            "same data, or declare shared_across_processes = False"
        )
        return factory

    def _seed_counter(self, store: StateStore) -> str:
        task_id = self._task_id("cas")
        store.create(CounterState(task_id=task_id, stage_name="counter"))
        return task_id

    def test_create_race_threads_one_winner(self, backend: ObjectBackend) -> None:
        key = self._key("race.json")
        barrier = threading.Barrier(self.race_threads)

        def attempt(i: int) -> bytes | None:
            body = f"writer-{i}".encode()
            barrier.wait(timeout=60)
            try:
                backend.write(key, body, CREATE)
            except AlreadyExists:
                return None
            return body

        with ThreadPoolExecutor(self.race_threads) as pool:
            outcomes = list(pool.map(attempt, range(self.race_threads)))
        winners = [o for o in outcomes if o is not None]
        assert len(winners) == 1, (
            f"{self.race_threads} threads racing write(Create) on one key must yield exactly "
            f"one winner (the others AlreadyExists); winners: {winners}"
        )
        assert backend.read(key)[0] == winners[0], (
            "the stored body must be the winner's; a loser's bytes landed"
        )

    def test_create_race_processes_one_winner(
        self, backend: ObjectBackend, backend_factory: BackendFactory | None
    ) -> None:
        factory = self._factory(backend_factory)
        key = self._key("race.json")
        args = [(factory, key, f"process-{i}".encode()) for i in range(self.race_processes)]
        outcomes = run_processes(create_worker, args, self.process_timeout)
        errors = [o for o in outcomes if o[0] == "error"]
        assert not errors, (
            f"a racing process failed with something other than AlreadyExists: {errors}"
        )
        winners = [body for tag, body in outcomes if tag == "won"]
        assert len(winners) == 1, (
            f"{self.race_processes} processes racing write(Create) on one key must yield "
            f"exactly one winner; outcomes: {outcomes}"
        )
        assert backend.read(key)[0] == winners[0], (
            "the stored body must be the winning process's; a loser's bytes landed"
        )

    def _assert_no_lost_update(
        self, store: StateStore, task_id: str, workers: int, each: int
    ) -> None:
        final = store.load_record(task_id, "counter", CounterState)
        assert final.value.count == workers * each, (
            f"{workers} workers x {each} compare-and-swap increments must total "
            f"{workers * each}; got {final.value.count}: write(Replace) accepted a stale "
            "version (a lost update)"
        )
        assert final.revision == 1 + workers * each, (
            f"every successful save adds one revision: expected {1 + workers * each}, "
            f"got {final.revision}"
        )

    def test_cas_race_threads_no_lost_update(self, backend: ObjectBackend) -> None:
        seed = StateStore(backend, PREFIX)
        task_id = self._seed_counter(seed)
        barrier = threading.Barrier(self.cas_workers)

        def worker(_: int) -> int:
            store = StateStore(backend, PREFIX)
            barrier.wait(timeout=60)
            return increment(store, task_id, self.cas_increments)

        with ThreadPoolExecutor(self.cas_workers) as pool:
            list(pool.map(worker, range(self.cas_workers)))
        self._assert_no_lost_update(seed, task_id, self.cas_workers, self.cas_increments)

    def test_cas_race_shared_store_threads_no_lost_update(self, backend: ObjectBackend) -> None:
        # One StateStore shared by threads: it keeps no version of its own between calls,
        # so each thread's record alone decides what its save replaces.
        store = StateStore(backend, PREFIX)
        task_id = self._seed_counter(store)
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda _: increment(store, task_id, 25), range(4)))
        self._assert_no_lost_update(store, task_id, 4, 25)

    def test_cas_race_processes_no_lost_update(
        self, backend: ObjectBackend, backend_factory: BackendFactory | None
    ) -> None:
        factory = self._factory(backend_factory)
        seed = StateStore(backend, PREFIX)
        task_id = self._seed_counter(seed)
        args = [(factory, task_id, self.cas_increments) for _ in range(self.cas_workers)]
        outcomes = run_processes(increment_worker, args, self.process_timeout)
        assert all(tag == "ok" for tag, _ in outcomes), (
            f"a racing process failed with something other than Conflict: {outcomes}"
        )
        self._assert_no_lost_update(seed, task_id, self.cas_workers, self.cas_increments)
