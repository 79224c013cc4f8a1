"""No update is ever silently lost through the store: a save names the record it replaces,
and a stale one is a ``Conflict`` whatever handle or thread it comes through. Also what
a save costs, and how revisions and epochs follow the record replaced."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from eleanor_cloud.backends.base import ObjectBackend
from eleanor_cloud.errors import AlreadyExists, Conflict
from eleanor_cloud.store.records import Record
from eleanor_cloud.store.state_store import StateStore
from eleanor_cloud.testing.conformance._base import (
    PREFIX,
    ContractBase,
    CounterState,
    expect_raises,
)
from eleanor_cloud.testing.conformance.wrappers import CountingBackend

__all__ = ["LostUpdateContract"]


class LostUpdateContract(ContractBase):
    def _seed(self, store: StateStore) -> Record[CounterState]:
        return store.create(CounterState(task_id=self._task_id("lost"), stage_name="counter"))

    def _load(self, store: StateStore, task_id: str) -> Record[CounterState]:
        return store.load_record(task_id, "counter", CounterState)

    def _assert_conflict_keeps(
        self, info: pytest.ExceptionInfo[Conflict], store: StateStore, kept: Record[CounterState]
    ) -> None:
        current = info.value.current
        assert current is not None, (
            "a Conflict from save must carry .current, the record now stored (one read)"
        )
        assert current.write_id == kept.write_id, (
            f"Conflict.current must be the record that won; got revision {current.revision}"
        )
        stored = self._load(store, kept.value.task_id)
        assert stored.write_id == kept.write_id, (
            "the stale save must not have landed: the earlier save's change is gone (a lost update)"
        )

    # The README's own usage, which once lost an update: two copies of one state read
    # through one handle in one thread, both changed and saved.
    def test_two_copies_from_one_handle_second_save_conflicts(self, store: StateStore) -> None:
        task_id = self._seed(store).value.task_id
        a = self._load(store, task_id)
        b = self._load(store, task_id)
        saved = store.save(a.value.model_copy(update={"count": 1}), replaces=a)
        with expect_raises(Conflict, "save of a stale copy read through the same handle") as info:
            store.save(b.value.model_copy(update={"note": "from b"}), replaces=b)
        self._assert_conflict_keeps(info, store, saved)

    def test_two_copies_from_two_handles_second_save_conflicts(self, store: StateStore) -> None:
        other = StateStore(store.backend, PREFIX)
        task_id = self._seed(store).value.task_id
        a = self._load(store, task_id)
        b = self._load(other, task_id)
        saved = store.save(a.value.model_copy(update={"count": 10}), replaces=a)
        with expect_raises(Conflict, "save of a stale copy read through another handle") as info:
            other.save(b.value.model_copy(update={"count": 1}), replaces=b)
        self._assert_conflict_keeps(info, store, saved)
        current = info.value.current
        assert current is not None, "a Conflict from save must carry .current"
        assert current.value.count == 10, (
            f"Conflict.current must hold the stored state; got {current.value}"
        )

    def test_two_copies_from_two_threads_second_save_conflicts(self, store: StateStore) -> None:
        task_id = self._seed(store).value.task_id
        # b lives in its own thread; each step runs to completion before the next
        # (.result()), so the interleaving is fixed without any sleep.
        with ThreadPoolExecutor(1) as other_thread:
            b = other_thread.submit(self._load, store, task_id).result()
            a = self._load(store, task_id)
            saved = store.save(a.value.model_copy(update={"count": 1}), replaces=a)
            stale = b.value.model_copy(update={"count": 2})
            with expect_raises(Conflict, "save of a stale copy from another thread") as info:
                other_thread.submit(store.save, stale, replaces=b).result()
        self._assert_conflict_keeps(info, store, saved)

    def test_create_over_an_existing_state_conflicts(self, store: StateStore) -> None:
        seeded = self._seed(store)
        stranger = StateStore(store.backend, PREFIX)
        intruder = CounterState(task_id=seeded.value.task_id, stage_name="counter", count=99)
        with expect_raises(AlreadyExists, "save(replaces=None) over a stored state"):
            stranger.save(intruder, replaces=None)
        with expect_raises(AlreadyExists, "create over a stored state"):
            stranger.create(intruder)
        stored = self._load(store, seeded.value.task_id)
        assert stored.write_id == seeded.write_id, (
            "save(replaces=None) is create-if-absent: it must never overwrite a stored state"
        )

    def test_aba_is_not_possible(self, store: StateStore) -> None:
        task_id = self._seed(store).value.task_id
        stale = self._load(StateStore(store.backend, PREFIX), task_id)  # version A
        b = store.save(stale.value.model_copy(update={"count": 1}), replaces=stale)
        back = store.save(b.value.model_copy(update={"count": 0}), replaces=b)  # A's content
        with expect_raises(Conflict, "save replacing a version changed and changed back (ABA)"):
            store.save(stale.value.model_copy(update={"note": "late"}), replaces=stale)
        final = self._load(store, task_id)
        assert final.write_id == back.write_id, (
            "a state changed and changed back has a new version (every body is unique): a "
            "save replacing the first version must conflict, not land"
        )
        assert final.revision == 3, f"expected revision 3 after two saves; got {final.revision}"

    def test_revision_and_epoch_follow_the_record_replaced(self, store: StateStore) -> None:
        state = CounterState(task_id=self._task_id("rev"), stage_name="counter")
        first = store.create(state, epoch=3)
        assert (first.revision, first.epoch) == (1, 3), (
            f"create(epoch=3) must write revision 1 at epoch 3; got {first.revision}, {first.epoch}"
        )
        second = store.save(state.model_copy(update={"count": 1}), replaces=first)
        assert (second.revision, second.epoch) == (2, 3), (
            "save must write replaces.revision + 1 and keep replaces.epoch by default; got "
            f"revision {second.revision}, epoch {second.epoch}"
        )
        with ThreadPoolExecutor(1) as other_thread:
            third = other_thread.submit(
                store.save, state.model_copy(update={"count": 2}), replaces=second, epoch=4
            ).result()
        assert (third.revision, third.epoch) == (3, 4), (
            "a save from another thread, with an explicit epoch, must write revision 3 at "
            f"epoch 4; got {third.revision}, {third.epoch}"
        )
        stored = self._load(StateStore(store.backend, PREFIX), state.task_id)
        assert (stored.revision, stored.epoch, stored.version) == (3, 4, third.version), (
            "a fresh handle must read what the last save returned"
        )
        with expect_raises(Conflict, "save replacing revision 1 when 3 is stored") as info:
            StateStore(store.backend, PREFIX).save(state, replaces=first)
        assert info.value.current is not None, "a Conflict from save must carry .current"
        assert info.value.current.revision == 3, (
            f"Conflict.current must be the stored record; got revision "
            f"{info.value.current.revision}"
        )

    def test_save_after_read_or_write_costs_one_write(self, backend: ObjectBackend) -> None:
        counting = CountingBackend(backend)
        store = StateStore(counting, PREFIX)
        state = CounterState(task_id=self._task_id("cost"), stage_name="counter")
        created = store.create(state)
        assert dict(counting.calls) == {"write": 1}, (
            f"create must cost exactly one write; got {dict(counting.calls)}"
        )
        counting.calls.clear()
        saved = store.save(state.model_copy(update={"count": 1}), replaces=created)
        assert dict(counting.calls) == {"write": 1}, (
            f"a save replacing the record a write returned must cost one write and no "
            f"read; got {dict(counting.calls)}"
        )
        counting.calls.clear()
        reader = StateStore(counting, PREFIX)
        loaded = reader.load_record(state.task_id, "counter", CounterState)
        assert dict(counting.calls) == {"read": 1}, (
            f"load_record must cost exactly one read; got {dict(counting.calls)}"
        )
        assert loaded.version == saved.version, (
            "a read must return the version the last write returned"
        )
        counting.calls.clear()
        reader.save(loaded.value.model_copy(update={"count": 2}), replaces=loaded)
        assert dict(counting.calls) == {"write": 1}, (
            f"a save replacing the record a read returned must cost one write and no "
            f"read; got {dict(counting.calls)}"
        )

    def test_records_of_a_task_load_are_each_saveable(self, backend: ObjectBackend) -> None:
        # A task's stages load on a thread pool; each record must still carry its own
        # version, so the caller's thread saves every one of them with no further read.
        counting = CountingBackend(backend)
        store = StateStore(counting, PREFIX)
        task_id = self._task_id("pool")
        names = ["one", "two", "three"]
        for name in names:
            store.create(CounterState(task_id=task_id, stage_name=name))
        records = store.load_task_records(task_id, CounterState)
        assert sorted(records) == sorted(names), f"load_task_records found {sorted(records)}"
        counting.calls.clear()
        for name, record in records.items():
            store.save(record.value.model_copy(update={"note": name}), replaces=record)
        assert dict(counting.calls) == {"write": len(names)}, (
            f"saving each loaded record must cost one write each and no read; got "
            f"{dict(counting.calls)}"
        )
