"""The StateStore over this backend: typed states, tasks, manifests and leases round-trip;
bad keys and states are refused before any request; corrupt objects are reported and
never overwritten."""

from __future__ import annotations

import pytest

from eleanor_cloud.backends.base import CREATE, ObjectBackend
from eleanor_cloud.errors import (
    AlreadyExists,
    Conflict,
    CorruptState,
    InvalidKey,
    InvalidState,
    NotFound,
)
from eleanor_cloud.models import SimpleRecordsResult, StageStatus
from eleanor_cloud.store.records import Lease, TaskManifest
from eleanor_cloud.store.state_store import StateStore
from eleanor_cloud.testing.conformance._base import (
    PREFIX,
    ContractBase,
    CounterState,
    expect_raises,
)
from eleanor_cloud.testing.conformance.wrappers import CountingBackend

__all__ = ["StoreContract"]

_ENVELOPE = (
    b'{"format": "eleanor.stage-state/1", "revision": 1, "write_id": "w", "writer": "x",'
    b' "epoch": 0, "written_at": "2026-01-01T00:00:00Z", '
)
_BAD_KEYS = [
    ("../escape", "s"),
    ("t", "../../etc/passwd"),
    ("", "s"),
    ("t", ""),
    ("a/b", "s"),
    ("t", "_task"),
    (".hidden", "s"),
    ("t", "x" * 151),
    ("t", "s p"),
]


class StoreContract(ContractBase):
    def test_store_round_trips_typed_state(self, store: StateStore) -> None:
        state = CounterState(
            task_id=self._task_id("typed"),
            stage_name="extract",
            count=3,
            status=StageStatus.COMPLETE,
            note="ünïcødé ✓",
            result=SimpleRecordsResult(total_count=5, success_count=4, fail_count=1),
        )
        created = store.create(state)
        assert (created.revision, created.epoch) == (1, 0), (
            f"a create writes revision 1 at epoch 0; got {created.revision}, {created.epoch}"
        )
        loaded = StateStore(store.backend, PREFIX).load_record(
            state.task_id, "extract", CounterState
        )
        assert loaded.value == state, f"the state read back differs: {loaded.value!r}"
        assert isinstance(loaded.value.result, SimpleRecordsResult), (
            f"the typed result must come back typed; got {type(loaded.value.result).__name__}"
        )
        assert (loaded.version, loaded.write_id) == (created.version, created.write_id), (
            "a fresh handle must read the version and write_id the create returned"
        )

    def test_tasks_listing_loading_and_deleting(self, store: StateStore) -> None:
        for task_id in ("job-b", "job-a", "job-c"):
            for stage in ("one", "two"):
                store.create(CounterState(task_id=task_id, stage_name=stage))
        tasks = list(store.list_tasks())
        assert tasks == ["job-a", "job-b", "job-c"], (
            f"list_tasks must yield each task once, in order (a delimiter listing); got {tasks}"
        )
        states = store.load_task("job-b", CounterState)
        assert sorted(states) == ["one", "two"], f"load_task found stages {sorted(states)}"
        assert all(s.task_id == "job-b" for s in states.values()), (
            "load_task returned another task's state"
        )
        deleted = store.delete_task("job-b")
        assert deleted == 2, f"delete_task must delete the task's 2 objects; reported {deleted}"
        tasks = list(store.list_tasks())
        assert tasks == ["job-a", "job-c"], f"a deleted task must not be listed; got {tasks}"
        left = store.load_task("job-b", CounterState)
        assert left == {}, f"a deleted task must have no states left; got {sorted(left)}"
        with expect_raises(NotFound, "load of a deleted task's stage", match="job-b"):
            store.load("job-b", "one", CounterState)

    def test_delete_stage_is_unconditional_and_idempotent(self, store: StateStore) -> None:
        task_id = self._task_id("del")
        store.create(CounterState(task_id=task_id, stage_name="counter"))
        store.delete(task_id, "counter")
        with expect_raises(NotFound, "load after store.delete"):
            store.load(task_id, "counter", CounterState)
        store.delete(task_id, "counter")  # must not raise: nothing to delete
        again = store.create(CounterState(task_id=task_id, stage_name="counter", count=1))
        assert again.revision == 1, "after a delete the stage is created afresh, at revision 1"

    def test_manifest_is_written_once_and_read_back(self, store: StateStore) -> None:
        task_id = self._task_id("bound")
        manifest = TaskManifest(
            task_id=task_id,
            stages=("one", "two"),
            state_class="eleanor_cloud.testing.conformance.CounterState",
            created_at="2026-01-01T00:00:00.000000Z",
        )
        created = store.create_manifest(manifest)
        with expect_raises(AlreadyExists, "a second create_manifest of one task"):
            store.create_manifest(manifest.model_copy(update={"stages": ("other",)}))
        loaded = StateStore(store.backend, PREFIX).load_manifest_record(task_id)
        assert loaded.value == manifest, f"the manifest read back differs: {loaded.value!r}"
        assert loaded.version == created.version, (
            "a second create_manifest must not have replaced the first"
        )
        tasks = list(store.list_tasks())
        assert tasks == [task_id], f"a bound task must be listed; got {tasks}"
        with expect_raises(NotFound, "load_manifest of an unbound task", match="no-such-task"):
            store.load_manifest("no-such-task")

    def test_lease_is_created_then_compared_and_swapped(self, store: StateStore) -> None:
        task_id = self._task_id("lease")
        assert store.load_lease(task_id) is None, "a task never leased has no lease record"
        lease = Lease(
            task_id=task_id,
            holder="host-a/1",
            epoch=1,
            acquired_at="2026-01-01T00:00:00.000000Z",
            expires_at="2026-01-01T00:01:00.000000Z",
            ttl_seconds=60.0,
        )
        first = store.write_lease(lease, replaces=None)
        assert first.epoch == 1, f"a lease's envelope carries its epoch; got {first.epoch}"
        with expect_raises(AlreadyExists, "write_lease(replaces=None) over a lease"):
            store.write_lease(lease.model_copy(update={"holder": "host-b/2"}), replaces=None)
        renewed = store.write_lease(lease.model_copy(update={"renewals": 1}), replaces=first)
        taken = lease.model_copy(update={"holder": "host-b/2", "epoch": 2})
        with expect_raises(Conflict, "write_lease replacing a stale lease record"):
            store.write_lease(taken, replaces=first)  # a stale lease record
        loaded = store.load_lease(task_id)
        assert loaded is not None, "a written lease must load"
        assert (loaded.version, loaded.value.renewals) == (renewed.version, 1), (
            "the renewal (the only write at the current version) must be what is stored"
        )
        second = store.write_lease(taken, replaces=loaded)
        assert (second.epoch, second.revision) == (2, 3), (
            f"a takeover writes the new epoch at the next revision; got epoch "
            f"{second.epoch}, revision {second.revision}"
        )

    @pytest.mark.parametrize(("task_id", "stage_name"), _BAD_KEYS)
    def test_bad_keys_rejected_before_io(
        self, backend: ObjectBackend, task_id: str, stage_name: str
    ) -> None:
        counting = CountingBackend(backend)
        store = StateStore(counting, PREFIX)
        state = CounterState.model_construct(task_id=task_id, stage_name=stage_name)
        with expect_raises((InvalidKey, InvalidState), "create with a bad task id/stage"):
            store.create(state)
        with expect_raises((InvalidKey, InvalidState), "save with a bad task id/stage"):
            store.save(state, replaces=None)
        with expect_raises(InvalidKey, "load with a bad task id/stage"):
            store.load(task_id, stage_name, CounterState)
        assert sum(counting.calls.values()) == 0, (
            f"a bad task id or stage name must be refused before any request; the backend "
            f"saw {dict(counting.calls)}"
        )

    def test_unserializable_or_invalid_state_rejected_before_io(
        self, backend: ObjectBackend
    ) -> None:
        counting = CountingBackend(backend)
        store = StateStore(counting, PREFIX)
        state = CounterState(task_id="bad-1", stage_name="counter")
        state.count = "not a number"  # type: ignore[assignment]
        with expect_raises(InvalidState, "create of an invalid state", match="count"):
            store.create(state)
        state = CounterState(task_id="bad-1", stage_name="counter")
        state.note = object()  # type: ignore[assignment]
        with expect_raises(
            InvalidState, "create of an unserializable state", match="bad-1/counter"
        ):
            store.create(state)
        assert sum(counting.calls.values()) == 0, (
            f"an invalid state must be refused before any request; the backend saw "
            f"{dict(counting.calls)}"
        )

    @pytest.mark.parametrize(
        "body",
        [
            b'{"format": "eleanor.stage-state/1", "revision": 1, "wri',
            b"\x00\xff not json at all",
            b"[1, 2, 3]",
            _ENVELOPE.replace(b"stage-state/1", b"stage-state/99") + b'"state": {}}',
            _ENVELOPE + b'"state": {"attempts": -4}}',
            _ENVELOPE + b'"state": {"task_id": "other", "stage_name": "counter"}}',
        ],
        ids=["truncated", "binary", "wrong-shape", "unknown-format", "invalid-state", "wrong-task"],
    )
    def test_corrupt_objects_are_reported_and_never_overwritten(
        self, backend: ObjectBackend, body: bytes
    ) -> None:
        store = StateStore(backend, PREFIX)
        task_id = self._task_id("corrupt")
        key = store.stage_key(task_id, "counter")
        version = backend.write(key, body, CREATE)
        with expect_raises(CorruptState, "load of a corrupt object") as info:
            store.load(task_id, "counter", CounterState)
        assert key in str(info.value), f"CorruptState must name the key; got {info.value}"
        assert info.value.key == key, f"CorruptState.key must be {key!r}; got {info.value.key!r}"
        with expect_raises(CorruptState, "load_task over a corrupt object"):
            store.load_task(task_id, CounterState)
        with expect_raises((Conflict, CorruptState), "create over a corrupt object"):
            store.create(CounterState(task_id=task_id, stage_name="counter"))
        assert backend.read(key) == (body, version), (
            "a corrupt object must never be overwritten to 'repair' it"
        )
