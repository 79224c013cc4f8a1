"""``run --workers N`` (issue 17): a fanned-out stage's shards on local worker processes,
with one line per shard event when piped; Ctrl-C (SIGINT to the process group, as a
terminal sends it) checkpoints the shards and exits 75, and a re-run completes with
every record processed exactly once. Real processes: the CLI forks its workers.

The per-shard display is polled from the store; the test for what a poll shows and
costs drives :class:`~eleanor_cloud.cli.shard_watch.ShardWatch` by hand.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from eleanor_cloud import keys
from eleanor_cloud.engine import AnyStageState
from eleanor_cloud.engine.progress import Progress
from eleanor_cloud.models import StageStatus
from eleanor_cloud.store import StateStore, documents
from tests.cli.conftest import BIN, assert_valid_document
from tests.cli.fanout_tasks import Fan, build
from tests.engine.conftest import CountingBackend

ROOT = Path(__file__).resolve().parents[2]
FACTORY = "tests.cli.fanout_tasks:build"


def _env(cli_env: dict[str, str], log: Path, **fan: str) -> dict[str, str]:
    return {**cli_env, "FAN_LOG": str(log), **{f"FAN_{k.upper()}": v for k, v in fan.items()}}


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [str(BIN / "eleanor-cloud"), "run", FACTORY, "--task-id", "t", "--workers", "2"]
    return subprocess.run(
        [*cmd, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def _logged(log: Path) -> Counter[str]:
    return Counter(log.read_text().split())


def _result(store: StateStore, stage: str) -> dict[str, Any]:
    result: dict[str, Any] = store.load("t", stage, AnyStageState).result
    return result


def test_run_with_workers_runs_every_shard_and_joins(
    cli_env: dict[str, str], store: StateStore, tmp_path: Path
) -> None:
    log = tmp_path / "records.log"
    done = _run(_env(cli_env, log, shards="4", per="25"))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "[fan] attempt 1: started"
    assert lines[1].startswith("[fan] fanned out over 4 shards (plan ")
    assert lines[1].endswith("), 2 at a time")
    ended = [x for x in lines if x.startswith("[fan/s") and " COMPLETE " in x]
    assert sorted(x.split("]")[0] for x in ended) == [f"[fan/s{i}" for i in range(4)]
    assert ended[-1].endswith("(ok 25, fail 0; 4/4 shards ended)")
    # The shards' lines come before the join's.
    assert lines.index("[fan] COMPLETE: joined 4 shards") > lines.index(ended[-1])
    assert "task t: COMPLETE" in done.stdout
    assert "result: total=100 ok=100 fail=0 unprocessed=0" in done.stdout
    assert "stopped with work left" not in done.stdout  # the run's pauses are not its end
    assert done.stderr == ""
    assert _result(store, "after")["success_count"] == 100
    counts = _logged(log)
    assert len(counts) == 100 and set(counts.values()) == {1}

    again = _run(_env(cli_env, log), "--json")
    assert again.returncode == 0, again.stderr
    doc = json.loads(again.stdout)
    assert_valid_document(doc)
    fan = next(s for s in doc["stages"] if s["name"] == "fan")
    assert doc["exit_code"] == 0 and fan["fanout"]["ended"] == 4
    assert [s["ended"] for s in fan["shards"]] == [True] * 4


def test_run_without_workers_plans_and_says_how_to_run_the_shards(invoke) -> None:
    result = invoke("run", FACTORY, "--task-id", "t")
    assert result.exit_code == 3, result.output
    assert "fan-out of fan: 4 shards (plan " in result.stdout
    assert "stage fan is fanned out: its shards run on any worker" in result.stdout
    assert "'eleanor-cloud run ... --workers N'" in result.stdout


class _Lines:
    """The lines a process prints, read on a thread, waited for with a bound."""

    def __init__(self, stream: Any) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        self._pump_thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._pump_thread.start()

    def _pump(self, stream: Any) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))

    def wait_for(self, needle: str, timeout: float = 60.0) -> str:
        for line in self.seen:
            if needle in line:
                return line
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(line)
            if needle in line:
                return line
        pytest.fail(f"no line with {needle!r} within {timeout}s; saw {self.seen}")

    def rest(self) -> list[str]:
        """Every line, once the process closed its output."""
        self._pump_thread.join(60)
        while not self._queue.empty():
            self.seen.append(self._queue.get())
        return self.seen


def test_ctrl_c_checkpoints_the_shards_exits_75_and_a_rerun_completes(
    cli_env: dict[str, str], store: StateStore, tmp_path: Path
) -> None:
    log = tmp_path / "records.log"
    # 4 shards of 400 records at 10 ms each: ~4 s a shard, so the signal lands mid-shard.
    env = _env(cli_env, log, shards="4", per="400", delay="0.01")
    cmd = [str(BIN / "eleanor-cloud"), "run", FACTORY, "--task-id", "t", "--workers", "2"]
    with subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        lines = _Lines(proc.stdout)
        try:
            lines.wait_for("[fan/s0] attempt 1: started")
            lines.wait_for("[fan/s1] attempt 1: started")
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the CLI and its workers
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        out, err = "\n".join(lines.rest()), proc.stderr.read()
    assert code == 75, out + err
    assert "SIGINT received: the workers checkpointed their shards and stopped" in err
    assert "[fan/s0] suspended at " in out and "[fan/s1] suspended at " in out
    assert "stopped with work left (SIGINT received)" in out
    assert "suspended: the next run resumes it" in out  # the shard table of the report
    for shard in ("s0", "s1"):
        progress = documents.load_progress(store, "t", "fan", Progress, shard=shard)
        assert progress is not None and progress.value.suspended
        assert 0 < progress.value.success < 400
        lease = store.load_lease("t", key=keys.shard_lease_key(store.prefix, "t", "fan", shard))
        assert lease is not None and lease.value.released
    first = _logged(log)
    assert set(first.values()) == {1} and 0 < len(first) < 1600

    again = _run(_env(cli_env, log, shards="4", per="400"))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "[fan/s0] attempt 1: suspended by an earlier run at " in again.stdout
    assert "task t: COMPLETE" in again.stdout
    counts = _logged(log)
    assert len(counts) == 1600 and set(counts.values()) == {1}  # every record, once
    result = _result(store, "fan")
    assert result["success_count"] == result["total_count"] == 1600


def test_what_the_shard_display_shows_and_reads(store: StateStore) -> None:
    from eleanor_cloud.cli.output import PlainProgress
    from eleanor_cloud.cli.shard_watch import ShardWatch

    notes: list[str] = []

    class Notes(PlainProgress):
        def note(self, text: str, *, style: str | None = None) -> None:
            notes.append(text)

    fan = Fan(6, 20, 0.0, None)
    assert not build("t", store, fan).run().done
    counting = CountingBackend(store.backend)
    watched = StateStore(counting, store.prefix)
    watch = ShardWatch(watched, "t", ["fan"], 1, Notes(quiet=True))
    watch.start()  # finds the stage the earlier run fanned out; polls once, here
    watch.stop()
    assert notes[0].startswith("[fan] fanned out over 6 shards (plan ")
    assert notes[0].endswith("), 1 at a time")
    assert build("t", store).run_shard("fan", "s0").done
    engine = build("t", store, fan)
    fan.on_record = lambda shard, rid: rid == "r00031" and engine.request_stop("test")
    assert not engine.run_shard("fan", "s1").done  # 12 of 20, suspended

    notes.clear()
    counting.reset()
    watch.tick()
    assert notes == [
        "[fan/s0] COMPLETE (ok 20, fail 0; 1/6 shards ended)",
        "[fan/s1] attempt 1: suspended at 15/20 records",
    ]
    reads = Counter(op for op, _ in counting.log)
    # 1 LIST of done/, the new marker, and the progress of the window (2 x 1 worker).
    assert reads == Counter({"list": 1, "read": 3})
    notes.clear()
    counting.reset()
    watch.tick()
    assert notes == []  # nothing new: nothing said twice
    assert Counter(op for op, _ in counting.log) == Counter({"list": 1, "read": 2})
    assert store.load("t", "fan", AnyStageState).status is StageStatus.RUNNING


def test_a_second_ctrl_c_exits_at_once_and_leaves_no_worker(
    cli_env: dict[str, str], store: StateStore, tmp_path: Path
) -> None:
    # 2 s a record: after the first signal the workers' batches would take ~10 s more.
    env = _env(cli_env, tmp_path / "records.log", shards="2", per="400", delay="2")
    cmd = [str(BIN / "eleanor-cloud"), "run", FACTORY, "--task-id", "t", "--workers", "2"]
    with subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        lines = _Lines(proc.stdout)
        try:
            lines.wait_for("[fan/s0] attempt 1: started")
            os.killpg(proc.pid, signal.SIGINT)
            lines.wait_for("SIGINT received: the workers finish their batch")
            began = time.monotonic()
            os.killpg(proc.pid, signal.SIGINT)
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        err = proc.stderr.read()
    assert code == 130, err
    assert time.monotonic() - began < 8  # not after the batches in flight
    assert "eleanor-cloud: interrupted" in err
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)  # the workers were terminated with it, none orphaned
    progress = documents.load_progress(store, "t", "fan", Progress, shard="s0")
    assert progress is not None and not progress.value.suspended  # killed mid-batch


def test_a_shard_held_elsewhere_is_one_error_line_naming_where_to_look(
    cli_env: dict[str, str], store: StateStore, tmp_path: Path
) -> None:
    from tests.cli.test_fanout_status import lease_shard

    assert not build("t", store).run().done  # planned
    lease_shard(store, "s1", holder="otherhost/7/abc")
    held = _run(_env(cli_env, tmp_path / "records.log", shards="4", per="25"))
    assert held.returncode == 1, held.stdout + held.stderr
    (line,) = held.stderr.splitlines()
    assert line.startswith(
        "eleanor-cloud: error: shard 's1' of stage 'fan' of task 't' is leased by 'otherhost/7/abc'"
    )
    assert "'eleanor-cloud status t --shards' shows their holders" in line
    assert sorted(_logged(tmp_path / "records.log")) == [
        f"r{i:05d}" for i in range(100) if not 25 <= i < 50
    ]
