"""Records stages killed by SIGKILL at every batch boundary and inside batches, then
resumed by another process, on the local store and on S3 over HTTP (moto server).

Must hold: every record ends ``success`` exactly once in the final counts, and the
records offered twice are exactly those of the one batch in flight at the kill.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from tests.engine.taskdefs import finish

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
N, B = 50, 10


def run_worker(
    store: str, workdir: Path, *extra: str, endpoint: str | None = None
) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "tests.engine.records_worker", store, str(workdir)]
    if endpoint:
        args += ["--endpoint", endpoint]
    return subprocess.Popen(
        [*args, "--records", str(N), "--batch", str(B), *extra],
        cwd=workdir,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def check(workdir: Path, kill: tuple[str, str], store: str, endpoint: str | None) -> None:
    first = run_worker(store, workdir, kill[0], kill[1], endpoint=endpoint)
    first.communicate(timeout=60)
    assert first.returncode == -9, "the worker must have been killed"
    rc, summary = finish(run_worker(store, workdir, endpoint=endpoint), timeout=90)
    assert rc == 0 and summary["status"] == "COMPLETE", summary
    result = summary["stages"][0]["result"]
    assert result == {
        "total_count": N,
        "success_count": N,
        "fail_count": 0,
        "unprocessed_count": 0,
        "message": None,
    }
    offered: dict[str, list[str]] = defaultdict(list)
    for line in (workdir / "effects").read_text().splitlines():
        _, _, key, rid = line.split()
        offered[rid].append(key)
    assert sorted(offered) == [f"r{i:04d}" for i in range(N)], "every record processed"
    twice = {rid for rid, keys in offered.items() if len(keys) > 1}
    if kill[0] == "--kill-after-checkpoint":
        assert twice == set(), "a kill at a batch boundary re-offers nothing"
    else:
        k, j = (int(x) for x in kill[1].split(":"))
        assert twice == {f"r{i:04d}" for i in range(k * B, k * B + j)}, "only the batch in flight"
        assert all(len(set(offered[r])) == 1 for r in twice), "re-offered under the same key"


BOUNDARIES = [("--kill-after-checkpoint", str(k)) for k in range(1, N // B)]
INSIDE = [("--kill-in-batch", f"{k}:{j}") for k, j in ((0, 3), (2, 0), (2, 9), (4, 5))]


@pytest.mark.parametrize("kill", BOUNDARIES + INSIDE, ids=lambda k: f"{k[0][2:]}={k[1]}")
def test_local_store(kill: tuple[str, str], tmp_path: Path) -> None:
    check(tmp_path, kill, str(tmp_path / "store"), None)


@pytest.mark.parametrize("kill", [BOUNDARIES[1], INSIDE[2]], ids=lambda k: f"{k[0][2:]}={k[1]}")
def test_s3_over_http(
    kill: tuple[str, str], tmp_path: Path, s3_bucket: str, moto_server_url: str
) -> None:
    check(tmp_path, kill, f"s3://{s3_bucket}/pfx", moto_server_url)


def test_a_frozen_holder_cannot_move_the_cursor_or_the_counts(tmp_path: Path) -> None:
    """SIGSTOP a worker mid-stage, let another take the task over and finish it, then
    SIGCONT the first: it stops with LeaseLost and the progress stays the successor's."""
    import signal

    from eleanor_cloud.backends.local import LocalBackend
    from eleanor_cloud.engine.progress import Progress
    from eleanor_cloud.store import StateStore, documents
    from tests.engine.taskdefs import wait_for_file

    store_dir = tmp_path / "store"
    zombie = run_worker(str(store_dir), tmp_path, "--pause-in-batch", "2")
    try:
        wait_for_file(tmp_path / "paused")
        zombie.send_signal(signal.SIGSTOP)
        (tmp_path / "go").touch()
        rc, summary = finish(run_worker(str(store_dir), tmp_path), timeout=90)
        assert rc == 0 and summary["status"] == "COMPLETE", summary
        reader = StateStore(LocalBackend(store_dir, fsync=False))
        before = documents.load_progress(reader, "job", "load", Progress)
    finally:
        zombie.send_signal(signal.SIGCONT)
    out, err = zombie.communicate(timeout=60)
    assert zombie.returncode != 0 and "LeaseLost" in err, (out, err[-2000:])
    after = documents.load_progress(reader, "job", "load", Progress)
    assert before is not None and after is not None
    assert (after.revision, after.write_id) == (before.revision, before.write_id)
    assert after.value.success == N and after.epoch == 2
