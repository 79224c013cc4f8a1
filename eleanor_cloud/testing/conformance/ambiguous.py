"""Ambiguous outcomes: a write that landed but whose answer was lost (a retry refused as a
conflict, or a give-up) is recognised by its ``write_id`` with one read, and one that
did not land is reported and leaves nothing behind."""

from __future__ import annotations

import pytest

from eleanor_cloud.backends.base import ObjectBackend, Version, WriteMode
from eleanor_cloud.errors import NotFound, Unavailable
from eleanor_cloud.store.state_store import StateStore
from eleanor_cloud.testing.conformance._base import (
    PREFIX,
    ContractBase,
    CounterState,
    expect_raises,
)
from eleanor_cloud.testing.conformance.wrappers import AmbiguousWriteBackend, CountingBackend

__all__ = ["AmbiguousOutcomeContract"]


class AmbiguousOutcomeContract(ContractBase):
    @pytest.mark.parametrize("how", ["retry", "raise"])
    @pytest.mark.parametrize("first", [True, False], ids=["create", "replace"])
    def test_ambiguous_outcome_is_reconciled(
        self, backend: ObjectBackend, how: str, first: bool
    ) -> None:
        flaky = AmbiguousWriteBackend(backend, how)
        store = StateStore(flaky, PREFIX)
        state = CounterState(task_id=self._task_id("amb"), stage_name="counter")
        created = None if first else store.create(state)
        changed = state.model_copy(update={"count": 7})
        flaky.armed = True
        flaky.calls.clear()
        record = store.create(changed) if created is None else store.save(changed, replaces=created)
        expected_revision = 1 if first else 2
        assert record.revision == expected_revision, (
            f"a write whose answer was lost ({how}) must still report revision "
            f"{expected_revision}; got {record.revision}"
        )
        assert flaky.calls["read"] == 1, (
            "reconciling a lost answer must cost exactly one read (the store recognises "
            f"its own write_id); got {flaky.calls['read']}"
        )
        stored = StateStore(backend, PREFIX).load_record(state.task_id, "counter", CounterState)
        assert stored.write_id == record.write_id, (
            "the stored body must be the reconciled write's (same write_id)"
        )
        assert stored.revision == expected_revision, "the write must have landed exactly once"
        assert stored.value.count == 7, f"the stored state is not the one saved: {stored.value}"
        assert stored.version == record.version, (
            "the reconciled record must carry the version now stored, or the next save "
            f"would conflict: record has {record.version}, the store holds {stored.version}"
        )
        again = store.save(changed.model_copy(update={"count": 8}), replaces=record)
        assert again.revision == expected_revision + 1, (
            "the reconciled record must be usable as the next save's `replaces`"
        )

    def test_failed_write_is_reported_and_leaves_nothing(self, backend: ObjectBackend) -> None:
        class Down(CountingBackend):
            def write(self, key: str, data: bytes, mode: WriteMode) -> Version:
                self.calls["write"] += 1
                raise Unavailable("injected: connection refused", key=key)

        store = StateStore(Down(backend), PREFIX)
        task_id = self._task_id("down")
        with expect_raises(Unavailable, "a write that did not land must be reported"):
            store.create(CounterState(task_id=task_id, stage_name="counter"))
        with expect_raises(NotFound, "a write that did not land must leave nothing behind"):
            StateStore(backend, PREFIX).load(task_id, "counter", CounterState)
