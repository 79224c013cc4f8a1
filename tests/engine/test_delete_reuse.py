"""Deleting a task and reusing its id, with a holder of the deleted task still around
(issue 15, item 2). Real processes on a local-directory store.

The zombie completes s1, passes its lease check and stops right before creating s2's
object (the one write an epoch check cannot refuse: a create of an absent object).
Waiting is on files polled with bounded deadlines and on process exit.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from eleanor_cloud.backends.local import LocalBackend
from eleanor_cloud.engine import delete_task
from eleanor_cloud.errors import NotFound
from eleanor_cloud.models import StageStatus
from eleanor_cloud.store import StateStore
from tests.engine.taskdefs import DemoState, finish, wait_for_file
from tests.engine.test_processes import dirs, reader, start

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
__all__ = ["dirs"]  # the fixture, shared with test_processes

FAST = ("--ttl", "1", "--skew", "0")


def writers(store: Path) -> dict[str, tuple[str, int]]:
    return {
        n: (r.writer.split("/")[1], r.epoch)
        for n, r in reader(store).load_task_records("job", DemoState).items()
    }


@pytest.mark.parametrize(
    "zombie_first", [True, False], ids=["zombie-writes-first", "new-run-first"]
)
def test_a_holder_of_a_deleted_task_never_writes_into_its_successor(
    dirs: tuple[Path, Path], tmp_path: Path, zombie_first: bool
) -> None:
    store, workdir = dirs
    (workdir / "block-create-s2").touch()
    zombie = start("run", store, workdir, tmp_path / "a", *FAST)
    try:
        wait_for_file(workdir / "ready-create-s2")
        # A live holder (its renewer runs): delete refuses.
        rc, out = finish(start("delete", store, workdir, tmp_path / "op", *FAST))
        assert rc == 4 and out["error"] == "LeaseHeld", out
        zombie.send_signal(signal.SIGSTOP)
        # Frozen: its lease stops moving; delete watches it for a TTL, then deletes.
        rc, out = finish(start("delete", store, workdir, tmp_path / "op", *FAST, "--wait", "30"))
        assert rc == 0 and out["deleted"] >= 2, out  # the manifest and s1 at least
        lease = reader(store).load_lease("job")
        assert lease is not None and lease.value.floor == lease.value.epoch == 2
        (workdir / "block-create-s2").unlink()
        if zombie_first:
            # It creates s2 in the deleted task (nothing refuses a create of an absent
            # object), then stops at its next lease check: its deadline has passed.
            (workdir / "go-create-s2").touch()
            zombie.send_signal(signal.SIGCONT)
            rc, out = finish(zombie)
            assert rc == 3 and out["error"] == "LeaseLost", out
            stray = reader(store).load_record("job", "s2", DemoState)
            assert stray.epoch == 1 and stray.value.status is StageStatus.RUNNING
        successor = start("run", store, workdir, tmp_path / "b", *FAST)
        rc, summary = finish(successor)
        assert rc == 0 and summary["status"] == "COMPLETE", summary
    finally:
        (workdir / "go-create-s2").touch()
        zombie.send_signal(signal.SIGCONT)
    if not zombie_first:
        rc, out = finish(zombie)  # its create finds the successor's object: refused
        assert rc == 3 and out["error"] == "LeaseLost", out
    final = writers(store)
    assert {pid for pid, _ in final.values()} == {str(successor.pid)}
    assert {epoch for _, epoch in final.values()} == {3}  # above the tombstone's floor
    s2 = reader(store).load("job", "s2", DemoState)
    assert s2.status is StageStatus.COMPLETE and s2.attempts == 1  # no trace of the zombie
    log = (workdir / f"writes-{zombie.pid}.log").read_text().splitlines()
    landed_after_delete = [line for line in log if line.startswith("job/s2.json")]
    if zombie_first:
        assert landed_after_delete == ["job/s2.json Create ok"]  # reset by the new run
    else:
        assert landed_after_delete == ["job/s2.json Create AlreadyExists"]


def test_delete_of_an_unknown_task_is_not_found(tmp_path: Path) -> None:
    store = StateStore(LocalBackend(tmp_path, fsync=False))
    with pytest.raises(NotFound, match="no task 'nope'"):
        delete_task(store, "nope")


def test_a_lost_lease_object_is_outranked_and_the_task_fenced(tmp_path: Path) -> None:
    """The lease object vanished (deleted by hand, a lifecycle rule) while stage
    objects remain: the next holder takes an epoch above every stored one and fences,
    so a holder that still has records of them can write nothing."""
    from eleanor_cloud.engine import TaskEngine
    from eleanor_cloud.errors import Conflict
    from tests.engine.taskdefs import FnStage, Out

    store = StateStore(LocalBackend(tmp_path, fsync=False))
    a = FnStage("a", lambda s, c: Out())
    b = FnStage("b", lambda s, c: Out(), expected_duration=3600)
    first = TaskEngine("t", [a, b], DemoState, store).run(time_budget=60)  # pauses before b
    assert not first.done
    old = store.load_record("t", "a", DemoState)
    assert old.epoch == 1
    store.backend.delete(store.lease_key("t"))
    b.expected_duration = None
    assert TaskEngine("t", [a, b], DemoState, store).run().done
    fenced = store.load_task_records("t", DemoState)
    assert {r.epoch for r in fenced.values()} == {2}
    lease = store.load_lease("t")
    assert lease is not None and lease.value.epoch == 2
    with pytest.raises(Conflict):  # what the old holder kept is stale
        store.save(old.value, replaces=old, epoch=1)
