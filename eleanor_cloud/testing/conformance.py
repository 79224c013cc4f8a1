"""The backend conformance suite: one contract every backend proves, ours and yours.

Use it from a test module (pytest is required)::

    import functools, pytest
    from eleanor_cloud.testing.conformance import BackendConformance

    def _open(root):                       # module level: picklable for subprocesses
        return MyBackend(root)

    class TestMyBackend(BackendConformance):
        @pytest.fixture
        def backend(self, tmp_path):       # a fresh backend on an EMPTY namespace
            return MyBackend(tmp_path)

        @pytest.fixture
        def backend_factory(self, tmp_path):   # new instance, same data, other process
            return functools.partial(_open, tmp_path)

``emulator_gaps = {"test_name": "reason"}`` marks single tests as known gaps of an
emulator (strict xfail: the day the emulator is fixed, the suite says so). Class
attributes tune the sizes of the races and listings for slow peers.

What it proves: create/read/replace/delete/list semantics; exactly one winner of a
create race (threads, and processes where the backend is shared); no lost update in a
compare-and-swap race (8 workers x 50 increments through ``StateStore``); stale and
ABA versions rejected; ambiguous outcomes reconciled; delete-if-version; paginated
listings; bad keys refused before I/O; corrupt objects reported and never overwritten;
a save after a read or write costs exactly one backend write.
"""

from __future__ import annotations

import multiprocessing
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import pytest

from eleanor_cloud.backends.base import (
    CREATE,
    OVERWRITE,
    Capabilities,
    Create,
    ObjectBackend,
    Replace,
    Version,
    WriteMode,
)
from eleanor_cloud.errors import (
    AlreadyExists,
    Conflict,
    CorruptState,
    InvalidKey,
    InvalidState,
    NotFound,
    Unavailable,
)
from eleanor_cloud.models import BaseStageState, SimpleRecordsResult, StageStatus
from eleanor_cloud.store.state_store import StateStore

__all__ = [
    "AmbiguousWriteBackend",
    "BackendConformance",
    "CounterState",
    "CountingBackend",
]

PREFIX = "conformance"
BackendFactory = Callable[[], ObjectBackend]


class CounterState(BaseStageState[SimpleRecordsResult]):
    """The state the races increment (importable, so subprocesses can use it)."""

    count: int = 0
    note: str = ""


class CountingBackend:
    """Wraps a backend and counts calls per operation (one call = one request on S3)."""

    def __init__(self, inner: ObjectBackend) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    @property
    def description(self) -> str:
        return self.inner.description

    @property
    def capabilities(self) -> Capabilities:
        return self.inner.capabilities

    def read(self, key: str) -> tuple[bytes, Version]:
        self.calls["read"] += 1
        return self.inner.read(key)

    def write(self, key: str, data: bytes, mode: WriteMode) -> Version:
        self.calls["write"] += 1
        return self.inner.write(key, data, mode)

    def delete(self, key: str, if_version: Version | None = None) -> None:
        self.calls["delete"] += 1
        self.inner.delete(key, if_version)

    def list(self, prefix: str, delimiter: str | None = None) -> Iterator[str]:
        self.calls["list"] += 1
        return self.inner.list(prefix, delimiter)


class AmbiguousWriteBackend(CountingBackend):
    """Applies the next write, then behaves as if its response was lost.

    ``how="retry"``: like botocore, re-send the same conditional write, which now fails
    its precondition (the first attempt changed the object). ``how="raise"``: give up
    with ``Unavailable`` as a client whose retries ran out would.
    """

    def __init__(self, inner: ObjectBackend, how: str = "retry") -> None:
        super().__init__(inner)
        self.how = how
        self.armed = False

    def write(self, key: str, data: bytes, mode: WriteMode) -> Version:
        if not self.armed:
            return super().write(key, data, mode)
        self.armed = False
        super().write(key, data, mode)  # applied; the answer never arrives
        if self.how == "retry":
            return super().write(key, data, mode)
        raise Unavailable(
            f"{self.description}: connection lost after sending {key!r}",
            key=key,
            operation=str(mode),
        )


# -- subprocess workers (module level so they pickle under the spawn start method) -------


def _create_worker(
    factory: BackendFactory, key: str, data: bytes, barrier: Any, results: Any
) -> None:
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


def _increment(store: StateStore, task_id: str, times: int) -> int:
    """Load-increment-save ``times`` times, retrying conflicts; return conflicts seen."""
    conflicts = 0
    done = 0
    while done < times:
        state = store.load(task_id, "counter", CounterState)
        state.count += 1
        try:
            store.save(state)
        except Conflict:
            conflicts += 1
            continue
        done += 1
    return conflicts


def _cas_worker(
    factory: BackendFactory, task_id: str, times: int, barrier: Any, results: Any
) -> None:
    store = StateStore(factory(), PREFIX)
    barrier.wait(timeout=60)
    try:
        results.put(("ok", _increment(store, task_id, times)))
    except Exception as exc:  # noqa: BLE001 - reported to the parent as a failure
        results.put(("error", repr(exc)))


def _run_processes(
    target: Callable[..., None], args_list: list[tuple[Any, ...]], timeout: float
) -> list[tuple[str, Any]]:
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


class BackendConformance:
    """Mixin of contract tests; override the ``backend`` and ``backend_factory`` fixtures."""

    emulator_gaps: ClassVar[dict[str, str]] = {}
    race_threads: ClassVar[int] = 8
    race_processes: ClassVar[int] = 6
    cas_workers: ClassVar[int] = 8
    cas_increments: ClassVar[int] = 50
    many_keys: ClassVar[int] = 1100  # past S3's 1000-key page
    process_timeout: ClassVar[float] = 240.0

    # -- fixtures to override ----------------------------------------------------------

    @pytest.fixture
    def backend(self) -> ObjectBackend:
        raise NotImplementedError("override the `backend` fixture: a fresh, empty backend")

    @pytest.fixture
    def backend_factory(self, backend: ObjectBackend) -> BackendFactory | None:
        return None

    # -- plumbing ----------------------------------------------------------------------

    @pytest.fixture(autouse=True)
    def _mark_emulator_gap(self, request: pytest.FixtureRequest) -> None:
        name = getattr(request.node, "originalname", request.node.name)
        reason = self.emulator_gaps.get(name)
        if reason:
            request.applymarker(pytest.mark.xfail(reason=f"emulator gap: {reason}", strict=True))

    @pytest.fixture
    def store(self, backend: ObjectBackend) -> StateStore:
        return StateStore(backend, PREFIX)

    def _shared_factory(
        self, backend: ObjectBackend, factory: BackendFactory | None
    ) -> BackendFactory:
        if not backend.capabilities.shared_across_processes:
            pytest.skip(
                f"{backend.description} is not shared across processes "
                "(capabilities.shared_across_processes=False)"
            )
        if factory is None:
            pytest.fail(
                "backend is shared across processes but the test class gives no "
                "backend_factory fixture"
            )
        return factory

    @staticmethod
    def _key(name: str) -> str:
        return f"{PREFIX}/t-{uuid.uuid4().hex[:8]}/{name}"

    # -- bytes-level semantics ---------------------------------------------------------

    def test_protocol_shape(self, backend: ObjectBackend) -> None:
        assert isinstance(backend, ObjectBackend)
        assert isinstance(backend.description, str)
        assert backend.description
        assert isinstance(backend.capabilities, Capabilities)

    def test_read_missing_raises_not_found(self, backend: ObjectBackend) -> None:
        key = self._key("missing.json")
        with pytest.raises(NotFound) as info:
            backend.read(key)
        assert isinstance(info.value, FileNotFoundError)

    def test_create_returns_the_version_a_read_sees(self, backend: ObjectBackend) -> None:
        key = self._key("a.json")
        version = backend.write(key, b'{"v": 1}', CREATE)
        data, read_version = backend.read(key)
        assert data == b'{"v": 1}'
        assert read_version == version

    def test_binary_and_empty_bodies_round_trip(self, backend: ObjectBackend) -> None:
        body = bytes(range(256)) * 4
        key = self._key("bin.json")
        backend.write(key, body, CREATE)
        assert backend.read(key)[0] == body
        empty = self._key("empty.json")
        backend.write(empty, b"", CREATE)
        assert backend.read(empty)[0] == b""

    def test_create_existing_raises_already_exists(self, backend: ObjectBackend) -> None:
        key = self._key("a.json")
        first = backend.write(key, b"first", CREATE)
        with pytest.raises(AlreadyExists) as info:
            backend.write(key, b"second", CREATE)
        assert isinstance(info.value, Conflict)
        assert backend.read(key) == (b"first", first)

    def test_replace_at_current_version(self, backend: ObjectBackend) -> None:
        key = self._key("a.json")
        v1 = backend.write(key, b"one", CREATE)
        v2 = backend.write(key, b"two", v1.to_replace())
        assert v2 != v1
        assert backend.read(key) == (b"two", v2)

    def test_replace_with_stale_version_conflicts(self, backend: ObjectBackend) -> None:
        key = self._key("a.json")
        v1 = backend.write(key, b"one", CREATE)
        v2 = backend.write(key, b"two", Replace(v1))
        with pytest.raises(Conflict):
            backend.write(key, b"three", Replace(v1))
        assert backend.read(key) == (b"two", v2)

    def test_replace_missing_conflicts(self, backend: ObjectBackend) -> None:
        key = self._key("a.json")
        other = self._key("b.json")
        version = backend.write(other, b"x", CREATE)
        with pytest.raises(Conflict) as info:
            backend.write(key, b"one", Replace(version))
        assert not isinstance(info.value, AlreadyExists)
        with pytest.raises(NotFound):
            backend.read(key)

    def test_overwrite_is_unconditional(self, backend: ObjectBackend) -> None:
        key = self._key("a.json")
        v1 = backend.write(key, b"one", OVERWRITE)
        assert backend.read(key) == (b"one", v1)
        v2 = backend.write(key, b"two", OVERWRITE)
        assert backend.read(key) == (b"two", v2)

    def test_delete_unconditional_and_missing_is_noop(self, backend: ObjectBackend) -> None:
        key = self._key("a.json")
        backend.write(key, b"one", CREATE)
        backend.delete(key)
        with pytest.raises(NotFound):
            backend.read(key)
        backend.delete(key)  # idempotent
        backend.write(key, b"again", CREATE)  # the name is free again
        assert backend.read(key)[0] == b"again"

    def test_delete_if_version_matches(self, backend: ObjectBackend) -> None:
        key = self._key("a.json")
        version = backend.write(key, b"one", CREATE)
        backend.delete(key, if_version=version)
        with pytest.raises(NotFound):
            backend.read(key)

    def test_delete_if_version_mismatch_conflicts(self, backend: ObjectBackend) -> None:
        key = self._key("a.json")
        v1 = backend.write(key, b"one", CREATE)
        v2 = backend.write(key, b"two", Replace(v1))
        with pytest.raises(Conflict):
            backend.delete(key, if_version=v1)
        assert backend.read(key) == (b"two", v2)

    def test_delete_if_version_missing(self, backend: ObjectBackend) -> None:
        key = self._key("a.json")
        version = backend.write(key, b"one", CREATE)
        backend.delete(key)
        with pytest.raises((NotFound, Conflict)):
            backend.delete(key, if_version=version)

    def test_list_prefix_order_and_delimiter(self, backend: ObjectBackend) -> None:
        names = ["t1/b.json", "t1/a.json", "t1/sub/c.json", "t2/a.json", "t10/a.json"]
        for name in names:
            backend.write(f"{PREFIX}/{name}", b"x", CREATE)
        backend.write("elsewhere/t1/a.json", b"x", CREATE)
        listed = list(backend.list(f"{PREFIX}/t1/"))
        assert listed == [f"{PREFIX}/t1/a.json", f"{PREFIX}/t1/b.json", f"{PREFIX}/t1/sub/c.json"]
        assert list(backend.list(f"{PREFIX}/t1/", delimiter="/")) == [
            f"{PREFIX}/t1/a.json",
            f"{PREFIX}/t1/b.json",
            f"{PREFIX}/t1/sub/",
        ]
        assert list(backend.list(f"{PREFIX}/", delimiter="/")) == [
            f"{PREFIX}/t1/",
            f"{PREFIX}/t10/",
            f"{PREFIX}/t2/",
        ]
        assert list(backend.list(f"{PREFIX}/nothing/")) == []

    def test_list_many_keys(self, backend: ObjectBackend) -> None:
        keys = [f"{PREFIX}/many/k{i:05d}.json" for i in range(self.many_keys)]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda k: backend.write(k, b"x", CREATE), keys))
        assert list(backend.list(f"{PREFIX}/many/")) == keys
        assert list(backend.list(f"{PREFIX}/", delimiter="/")) == [f"{PREFIX}/many/"]

    # -- races -------------------------------------------------------------------------

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
        assert len(winners) == 1, outcomes
        assert backend.read(key)[0] == winners[0]

    def test_create_race_processes_one_winner(
        self, backend: ObjectBackend, backend_factory: BackendFactory | None
    ) -> None:
        factory = self._shared_factory(backend, backend_factory)
        key = self._key("race.json")
        args = [(factory, key, f"process-{i}".encode()) for i in range(self.race_processes)]
        outcomes = _run_processes(_create_worker, args, self.process_timeout)
        errors = [o for o in outcomes if o[0] == "error"]
        assert not errors, errors
        winners = [body for tag, body in outcomes if tag == "won"]
        assert len(winners) == 1, outcomes
        assert backend.read(key)[0] == winners[0]

    def _seed_counter(self, store: StateStore) -> str:
        task_id = f"cas-{uuid.uuid4().hex[:8]}"
        store.create(CounterState(task_id=task_id, stage_name="counter"))
        return task_id

    def test_cas_race_threads_no_lost_update(self, backend: ObjectBackend) -> None:
        seed = StateStore(backend, PREFIX)
        task_id = self._seed_counter(seed)
        barrier = threading.Barrier(self.cas_workers)

        def worker(_: int) -> int:
            store = StateStore(backend, PREFIX)
            barrier.wait(timeout=60)
            return _increment(store, task_id, self.cas_increments)

        with ThreadPoolExecutor(self.cas_workers) as pool:
            list(pool.map(worker, range(self.cas_workers)))
        final = seed.load_record(task_id, "counter", CounterState)
        assert final.value.count == self.cas_workers * self.cas_increments
        assert final.revision == 1 + self.cas_workers * self.cas_increments

    def test_cas_race_shared_store_threads_no_lost_update(self, backend: ObjectBackend) -> None:
        # One StateStore shared by threads: its version cache must not leak between them.
        store = StateStore(backend, PREFIX)
        task_id = self._seed_counter(store)
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda _: _increment(store, task_id, 25), range(4)))
        assert store.load(task_id, "counter", CounterState).count == 100

    def test_cas_race_processes_no_lost_update(
        self, backend: ObjectBackend, backend_factory: BackendFactory | None
    ) -> None:
        factory = self._shared_factory(backend, backend_factory)
        seed = StateStore(backend, PREFIX)
        task_id = self._seed_counter(seed)
        args = [(factory, task_id, self.cas_increments) for _ in range(self.cas_workers)]
        outcomes = _run_processes(_cas_worker, args, self.process_timeout)
        assert all(tag == "ok" for tag, _ in outcomes), outcomes
        final = seed.load_record(task_id, "counter", CounterState)
        assert final.value.count == self.cas_workers * self.cas_increments
        assert final.revision == 1 + self.cas_workers * self.cas_increments

    # -- store-level contract ----------------------------------------------------------

    def test_store_round_trips_typed_state(self, store: StateStore) -> None:
        state = CounterState(
            task_id="t-1",
            stage_name="extract",
            count=3,
            status=StageStatus.COMPLETE,
            note="ünïcødé ✓",
            result=SimpleRecordsResult(total_count=5, success_count=4, fail_count=1),
        )
        created = store.create(state)
        assert created.revision == 1
        fresh = StateStore(store.backend, PREFIX)
        loaded = fresh.load_record("t-1", "extract", CounterState)
        assert loaded.value == state
        assert isinstance(loaded.value.result, SimpleRecordsResult)
        assert loaded.version == created.version
        assert loaded.write_id == created.write_id

    def test_stale_writer_gets_conflict_with_current(self, store: StateStore) -> None:
        task_id = self._seed_counter(store)
        other = StateStore(store.backend, PREFIX)
        mine = store.load(task_id, "counter", CounterState)
        theirs = other.load(task_id, "counter", CounterState)
        theirs.count = 10
        written = other.save(theirs)
        mine.count = 1
        with pytest.raises(Conflict) as info:
            store.save(mine)
        current = info.value.current
        assert current is not None
        assert current.value.count == 10
        assert current.write_id == written.write_id
        assert other.load(task_id, "counter", CounterState).count == 10

    def test_save_without_having_seen_the_object_conflicts(self, store: StateStore) -> None:
        task_id = self._seed_counter(store)
        stranger = StateStore(store.backend, PREFIX)
        with pytest.raises(AlreadyExists):
            stranger.save(CounterState(task_id=task_id, stage_name="counter", count=99))
        assert store.load(task_id, "counter", CounterState).count == 0

    def test_aba_is_not_possible(self, store: StateStore) -> None:
        task_id = self._seed_counter(store)
        stale = StateStore(store.backend, PREFIX)
        stale_state = stale.load(task_id, "counter", CounterState)  # sees version A
        state = store.load(task_id, "counter", CounterState)
        state.count = 1
        store.save(state)  # B
        state.count = 0
        store.save(state)  # A's content again, but a new body
        stale_state.note = "late"
        with pytest.raises(Conflict):
            stale.save(stale_state)
        final = store.load_record(task_id, "counter", CounterState)
        assert final.revision == 3
        assert final.value.note == ""

    @pytest.mark.parametrize("how", ["retry", "raise"])
    @pytest.mark.parametrize("first", [True, False], ids=["create", "replace"])
    def test_ambiguous_outcome_is_reconciled(
        self, backend: ObjectBackend, how: str, first: bool
    ) -> None:
        flaky = AmbiguousWriteBackend(backend, how)
        store = StateStore(flaky, PREFIX)
        state = CounterState(task_id=f"amb-{uuid.uuid4().hex[:8]}", stage_name="counter")
        if not first:
            store.create(state)
        state.count = 7
        flaky.armed = True
        flaky.calls.clear()
        record = store.create(state) if first else store.save(state)
        expected_revision = 1 if first else 2
        assert record.revision == expected_revision
        assert flaky.calls["read"] == 1  # one reconciliation read, only on this path
        stored = StateStore(backend, PREFIX).load_record(state.task_id, "counter", CounterState)
        assert stored.write_id == record.write_id
        assert stored.revision == expected_revision  # written once
        assert stored.value.count == 7
        state.count = 8
        assert store.save(state).revision == expected_revision + 1  # cache is usable

    def test_failed_write_is_reported_and_leaves_nothing(self, backend: ObjectBackend) -> None:
        class Down(CountingBackend):
            def write(self, key: str, data: bytes, mode: WriteMode) -> Version:
                self.calls["write"] += 1
                raise Unavailable("injected: connection refused", key=key)

        down = Down(backend)
        store = StateStore(down, PREFIX)
        with pytest.raises(Unavailable):
            store.create(CounterState(task_id="down-1", stage_name="counter"))
        with pytest.raises(NotFound):
            StateStore(backend, PREFIX).load("down-1", "counter", CounterState)

    def test_save_after_read_or_write_costs_one_write(self, backend: ObjectBackend) -> None:
        counting = CountingBackend(backend)
        store = StateStore(counting, PREFIX)
        state = CounterState(task_id="cost-1", stage_name="counter")
        store.create(state)
        assert dict(counting.calls) == {"write": 1}
        counting.calls.clear()
        state.count = 1
        store.save(state)
        assert dict(counting.calls) == {"write": 1}
        counting.calls.clear()
        reader = StateStore(counting, PREFIX)
        loaded = reader.load("cost-1", "counter", CounterState)
        assert dict(counting.calls) == {"read": 1}
        counting.calls.clear()
        loaded.count = 2
        reader.save(loaded)
        assert dict(counting.calls) == {"write": 1}

    @pytest.mark.parametrize(
        ("task_id", "stage_name"),
        [
            ("../escape", "s"),
            ("t", "../../etc/passwd"),
            ("", "s"),
            ("t", ""),
            ("a/b", "s"),
            ("t", "_task"),
            (".hidden", "s"),
            ("t", "x" * 151),
            ("t", "s p"),
        ],
    )
    def test_bad_keys_rejected_before_io(
        self, backend: ObjectBackend, task_id: str, stage_name: str
    ) -> None:
        counting = CountingBackend(backend)
        store = StateStore(counting, PREFIX)
        with pytest.raises((InvalidKey, InvalidState)):
            store.save(CounterState.model_construct(task_id=task_id, stage_name=stage_name))
        with pytest.raises(InvalidKey):
            store.load(task_id, stage_name, CounterState)
        assert sum(counting.calls.values()) == 0

    def test_unserializable_or_invalid_state_rejected_before_io(
        self, backend: ObjectBackend
    ) -> None:
        counting = CountingBackend(backend)
        store = StateStore(counting, PREFIX)
        state = CounterState(task_id="bad-1", stage_name="counter")
        state.count = "not a number"  # type: ignore[assignment]
        with pytest.raises(InvalidState, match="count"):
            store.save(state)
        state = CounterState(task_id="bad-1", stage_name="counter")
        state.note = object()  # type: ignore[assignment]
        with pytest.raises(InvalidState, match="bad-1/counter"):
            store.save(state)
        assert sum(counting.calls.values()) == 0

    @pytest.mark.parametrize(
        "body",
        [
            b'{"format": "eleanor.stage-state/1", "revision": 1, "wri',
            b"\x00\xff not json at all",
            b"[1, 2, 3]",
            (
                b'{"format": "eleanor.stage-state/99", "revision": 1, "write_id": "w",'
                b' "writer": "x",'
                b' "epoch": 0, "written_at": "2026-01-01T00:00:00Z", "state": {}}'
            ),
            (
                b'{"format": "eleanor.stage-state/1", "revision": 1, "write_id": "w",'
                b' "writer": "x",'
                b' "epoch": 0, "written_at": "2026-01-01T00:00:00Z", "state": {"attempts": -4}}'
            ),
            (
                b'{"format": "eleanor.stage-state/1", "revision": 1, "write_id": "w",'
                b' "writer": "x",'
                b' "epoch": 0, "written_at": "2026-01-01T00:00:00Z",'
                b' "state": {"task_id": "other", "stage_name": "counter"}}'
            ),
        ],
        ids=["truncated", "binary", "wrong-shape", "unknown-format", "invalid-state", "wrong-task"],
    )
    def test_corrupt_objects_are_reported_and_never_overwritten(
        self, backend: ObjectBackend, body: bytes
    ) -> None:
        store = StateStore(backend, PREFIX)
        key = store.stage_key("corrupt-1", "counter")
        version = backend.write(key, body, CREATE)
        with pytest.raises(CorruptState) as info:
            store.load("corrupt-1", "counter", CounterState)
        assert key in str(info.value)
        assert info.value.key == key
        with pytest.raises(CorruptState):
            store.load_task("corrupt-1", CounterState)
        with pytest.raises((Conflict, CorruptState)):
            store.save(CounterState(task_id="corrupt-1", stage_name="counter"))
        assert backend.read(key) == (body, version)

    def test_tasks_listing_loading_and_deleting(self, store: StateStore) -> None:
        for task_id in ("job-b", "job-a", "job-c"):
            for stage in ("one", "two"):
                store.create(CounterState(task_id=task_id, stage_name=stage))
        assert list(store.list_tasks()) == ["job-a", "job-b", "job-c"]
        states = store.load_task("job-b", CounterState)
        assert sorted(states) == ["one", "two"]
        assert all(s.task_id == "job-b" for s in states.values())
        assert store.delete_task("job-b") == 2
        assert list(store.list_tasks()) == ["job-a", "job-c"]
        assert store.load_task("job-b", CounterState) == {}
        with pytest.raises(NotFound, match="job-b"):
            store.load("job-b", "one", CounterState)

    def test_delete_stage_if_version(self, store: StateStore) -> None:
        record = store.create(CounterState(task_id="del-1", stage_name="counter"))
        state = record.value.model_copy(update={"count": 1})
        newer = store.save(state)
        with pytest.raises(Conflict):
            store.delete("del-1", "counter", if_version=record.version)
        store.delete("del-1", "counter", if_version=newer.version)
        with pytest.raises(NotFound):
            store.load("del-1", "counter", CounterState)

    def test_write_modes_are_a_closed_type(self) -> None:
        version = Version("v1")
        assert isinstance(version.to_replace(), Replace)
        assert version.to_replace().version is version
        assert isinstance(CREATE, Create)

    def test_revision_grows_by_one_across_threads_and_explicit_modes(
        self, store: StateStore
    ) -> None:
        record = store.create(CounterState(task_id="rev-1", stage_name="counter"))
        results: list[int] = []

        def from_other_thread() -> None:
            state = record.value.model_copy(update={"count": 1})
            results.append(store.save(state, mode=record.version.to_replace()).revision)

        thread = threading.Thread(target=from_other_thread)
        thread.start()
        thread.join(timeout=60)
        assert results == [2]
        stranger = StateStore(store.backend, PREFIX)  # never saw any version
        latest = store.load_record("rev-1", "counter", CounterState)
        again = stranger.save(
            latest.value.model_copy(update={"count": 2}), mode=latest.version.to_replace()
        )
        assert again.revision == 3
        with pytest.raises(Conflict) as info:
            StateStore(store.backend, PREFIX).save(latest.value, mode=record.version.to_replace())
        assert info.value.current is not None
        assert info.value.current.revision == 3
        assert stranger.save(latest.value, mode=OVERWRITE).revision == 4
        assert StateStore(store.backend, PREFIX).save(latest.value, mode=OVERWRITE).revision == 5
