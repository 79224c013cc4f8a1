"""The task index: one marker per task in its status's partition, moved around the state
writes so a crash leaves extras (never a task missing), verified by readers."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eleanor_cloud.backends.base import Version, WriteMode
from eleanor_cloud.backends.local import LocalBackend
from eleanor_cloud.engine import TaskEngine, cancel_task, delete_task, retry_failed_task
from eleanor_cloud.engine import task_index as ti
from eleanor_cloud.engine.indexing import IndexWriter, status_after, task_status_of
from eleanor_cloud.engine.summary import overall_status
from eleanor_cloud.errors import Conflict, Unavailable
from eleanor_cloud.models import StageStatus
from eleanor_cloud.store import StateStore
from eleanor_cloud.store import index_markers as im
from tests.engine.conftest import CountingBackend, FakeClock
from tests.engine.taskdefs import DemoState, FnStage

S = StageStatus


def _ok(state: Any, ctx: Any) -> None:
    return None


def _boom(state: Any, ctx: Any) -> None:
    raise RuntimeError("<script>alert(1)</script>")


def run_task(
    store: StateStore, clock: FakeClock, task_id: str, *, fail: bool = False, attempts: int = 1
) -> S:
    stages = [FnStage("a", _ok), FnStage("b", _boom if fail else _ok)]
    engine = TaskEngine(task_id, stages, DemoState, store, clock=clock, max_attempts=attempts)
    return engine.run().status


def markers(store: StateStore) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for status in im.INDEXED:
        for task_id in im.list_marked(store, status):
            out.setdefault(task_id, set()).add(status.value)
    return out


def find(store: StateStore, **kw: Any) -> ti.IndexPage:
    return ti.find_tasks(store, verify=ti.states_verify(store), **kw)


# -- the pure part --------------------------------------------------------------------

statuses = st.sampled_from(list(StageStatus))


@given(st.dictionaries(st.sampled_from("abcd"), statuses), st.sampled_from("abcd"), statuses)
def test_a_write_moves_the_marker_exactly_when_the_task_status_changes(
    current: dict[str, S], name: str, new: S
) -> None:
    class _S:
        def __init__(self, status: S) -> None:
            self.status = status

    names = "abcd"
    states = {n: _S(s) for n, s in current.items()}
    before, after = status_after(names, states, name, _S(new))
    assert before is task_status_of(names, current)
    assert after is overall_status([{**current, name: new}.get(n, S.CREATED) for n in names])


def test_around_writes_ahead_and_tidies_after(clock: FakeClock) -> None:
    from eleanor_cloud.backends.memory import MemoryBackend

    counting = CountingBackend(MemoryBackend("x"))
    store = StateStore(counting, "p", clock=clock)
    index = IndexWriter(store, "t", clock)
    order: list[str] = []
    index.around(S.RUNNING, S.RUNNING, lambda: order.append("state"))
    assert counting.total == 0  # no status change: the index costs nothing
    index.around(S.RUNNING, S.COMPLETE, lambda: order.append("state"))
    assert [op for op, _ in counting.log] == ["write", "delete"]
    assert counting.log[0][1].endswith("_index/status/COMPLETE/t")
    assert counting.log[1][1].endswith("_index/status/RUNNING/t")

    def refused() -> None:
        raise Conflict("lost")

    counting.reset()
    with pytest.raises(Conflict):
        index.around(S.COMPLETE, S.ERROR, refused)
    # nothing landed: the write-ahead marker is taken back, the old one kept
    assert [(op, k.rsplit("/", 2)[-2]) for op, k in counting.log] == [
        ("write", "ERROR"),
        ("delete", "ERROR"),
    ]

    def ambiguous() -> None:
        raise Unavailable("timed out")

    with pytest.raises(Unavailable):
        index.around(S.COMPLETE, S.ERROR, ambiguous)
    # the write may have landed: the new marker stays (an extra at worst)
    assert markers(store) == {"t": {"COMPLETE", "ERROR"}}


# -- through the engine ---------------------------------------------------------------


def test_every_task_has_one_marker_in_its_status_partition(
    store: StateStore, clock: FakeClock
) -> None:
    assert run_task(store, clock, "ok-1") is S.COMPLETE
    assert run_task(store, clock, "bad-1", fail=True) is S.ERROR
    TaskEngine("new-1", [FnStage("a", _ok)], DemoState, store, clock=clock).bind()
    assert markers(store) == {"ok-1": {"COMPLETE"}, "bad-1": {"ERROR"}, "new-1": {"CREATED"}}
    assert find(store, status=S.ERROR).task_ids == ["bad-1"]
    assert find(store, status=S.CREATED).task_ids == ["new-1"]
    # the index folder is no task
    assert sorted(store.list_tasks()) == ["bad-1", "new-1", "ok-1"]


def test_admin_operations_move_the_marker(store: StateStore, clock: FakeClock) -> None:
    run_task(store, clock, "t", fail=True)
    retry_failed_task(store, "t")
    assert markers(store) == {"t": {"RUNNING"}}
    cancel_task(store, "t")
    assert markers(store) == {"t": {"CANCELED"}}
    delete_task(store, "t", clock=clock, sleep=clock.sleep)
    assert markers(store) == {}


def test_a_status_query_costs_the_matching_tasks_not_the_store(
    backend: CountingBackend, store: StateStore, clock: FakeClock
) -> None:
    for i in range(30):
        run_task(store, clock, f"t{i:02d}", fail=i % 10 == 0)
    backend.reset()
    page = find(store, status=S.ERROR)
    assert page.task_ids == ["t00", "t10", "t20"]
    # one LIST of the ERROR partition, then manifest + LIST + 2 stage GETs... per match
    assert backend.calls["list"] == 1 + 3  # the partition, then one per verified task
    assert backend.calls["read"] == 3 * (1 + 2)
    assert backend.calls["write"] == backend.calls["delete"] == 0


def test_pages_prefix_and_since(store: StateStore, clock: FakeClock) -> None:
    for i in range(5):
        run_task(store, clock, f"a{i}")
        clock.advance(60)
    run_task(store, clock, "b0")
    first = find(store, status=S.COMPLETE, limit=2)
    assert first.task_ids == ["a0", "a1"]
    assert first.next_after == "a1"
    assert find(store, status=S.COMPLETE, after="a1", limit=2).task_ids == ["a2", "a3"]
    assert find(store, status=S.COMPLETE, after="a3", limit=2).task_ids == ["a4", "b0"]
    assert find(store, status=S.COMPLETE, after="a3", limit=2).next_after is None
    assert find(store, status=S.COMPLETE, prefix="b").task_ids == ["b0"]
    assert find(store, prefix="a", limit=10).task_ids == [f"a{i}" for i in range(5)]
    recent = clock() - timedelta(seconds=90)
    assert find(store, since=recent).task_ids == ["a4", "b0"]
    assert find(store, status=S.COMPLETE, since=recent, prefix="a").task_ids == ["a4"]
    with pytest.raises(ValueError, match="timezone-aware"):
        find(store, since=recent.replace(tzinfo=None))


class _FailingDelete(CountingBackend):
    """Marker DELETEs fail: the crash window after a state write, without a crash."""

    def delete(self, key: str, if_version: Version | None = None) -> None:
        if "/_index/" in key:
            raise Unavailable("the network went away")
        super().delete(key, if_version)


class _FailingStage(CountingBackend):
    """The COMPLETE state write of stage b fails after its marker was written."""

    armed = True

    def write(self, key: str, data: bytes, mode: WriteMode) -> Version:
        if self.armed and key.endswith("/t/b.json") and b'"COMPLETE"' in data:
            raise Unavailable("the network went away")
        return super().write(key, data, mode)


def test_a_marker_left_behind_is_verified_away_and_repaired_after_the_grace(
    tmp_path: Path, clock: FakeClock
) -> None:
    store = StateStore(_FailingDelete(LocalBackend(tmp_path, fsync=False)), "p", clock=clock)
    assert run_task(store, clock, "t") is S.COMPLETE
    assert markers(store) == {"t": {"CREATED", "RUNNING", "COMPLETE"}}
    assert find(store, status=S.COMPLETE).task_ids == ["t"]
    stale = find(store, status=S.RUNNING)
    assert (stale.task_ids, stale.stale, stale.repaired) == ([], 1, 0)  # reads never write
    healthy = StateStore(LocalBackend(tmp_path, fsync=False), "p", clock=clock)
    young = ti.find_tasks(
        healthy, verify=ti.states_verify(healthy), status=S.RUNNING, repair=True, clock=clock
    )
    assert young.repaired == 0  # too young: it could be a holder's write-ahead mark
    clock.advance(ti.GRACE.total_seconds())
    report = ti.rebuild_index(healthy, clock=clock)
    assert (report.tasks, report.marked, report.removed) == (1, 0, 2)
    assert markers(healthy) == {"t": {"COMPLETE"}}


def test_a_failed_state_write_after_its_marker_leaves_the_task_findable(
    tmp_path: Path, clock: FakeClock
) -> None:
    backend = _FailingStage(LocalBackend(tmp_path, fsync=False))
    store = StateStore(backend, "p", clock=clock)
    with pytest.raises(Unavailable):
        run_task(store, clock, "t", attempts=2)
    # The COMPLETE mark went ahead; the state stayed RUNNING: the task is found RUNNING.
    assert markers(store) == {"t": {"RUNNING", "COMPLETE"}}
    assert find(store, status=S.RUNNING).task_ids == ["t"]
    assert find(store, status=S.COMPLETE).task_ids == []
    backend.armed = False
    clock.advance(120)  # the dead run's lease expires
    assert run_task(store, clock, "t", attempts=2) is S.COMPLETE
    assert markers(store) == {"t": {"COMPLETE"}}


def test_rebuild_restores_a_lost_index_and_then_writes_nothing(
    backend: CountingBackend, store: StateStore, clock: FakeClock
) -> None:
    for i in range(4):
        run_task(store, clock, f"t{i}", fail=i == 2)
    before = markers(store)
    for key in list(backend.inner.list("pfx/_index/")):
        backend.inner.delete(key)
    report = ti.rebuild_index(store, clock=clock)
    assert (report.tasks, report.marked, report.removed) == (4, 4, 0)
    assert markers(store) == before
    backend.reset()
    assert ti.rebuild_index(store, clock=clock).marked == 0
    assert backend.calls["write"] == backend.calls["delete"] == 0


@pytest.mark.parametrize(
    ("kill_at", "found_as"), [("marked-COMPLETE", "RUNNING"), ("unmark-RUNNING", "COMPLETE")]
)
def test_sigkill_in_either_crash_window_never_hides_the_task(
    tmp_path: Path, kill_at: str, found_as: str
) -> None:
    """Real processes: killed right after the write-ahead mark, or right after the state
    write; the task is found under its true status, and the next run tidies up."""
    cmd = [sys.executable, "-m", "tests.engine.index_worker", str(tmp_path), "job"]
    killed = subprocess.run(
        [*cmd, "--kill-at", kill_at], check=False, capture_output=True, timeout=60
    )
    assert killed.returncode == -9
    store = StateStore(LocalBackend(tmp_path, fsync=False), "runs")
    assert markers(store) == {"job": {"RUNNING", "COMPLETE"}}
    assert find(store, status=S(found_as)).task_ids == ["job"]
    other = "COMPLETE" if found_as == "RUNNING" else "RUNNING"
    assert find(store, status=S(other)).task_ids == []
    again = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "COMPLETE"
    if found_as == "RUNNING":  # the resumed run moved the marker itself
        assert markers(store) == {"job": {"COMPLETE"}}
    else:  # nothing changed status: the stale RUNNING marker waits for a repair
        assert find(store, status=S.COMPLETE).task_ids == ["job"]
        assert ti.rebuild_index(store, grace=timedelta(0)).removed == 1
        assert markers(store) == {"job": {"COMPLETE"}}
