"""Scenario 1 — race: many processes start the same task at the same moment.

Each process opens its own store (local directory, or S3 on the moto HTTP server),
waits at a file gate until every process is up, then calls ``TaskEngine.run()``. Half
give up at once on a held lease, half wait for it. Nothing crashes, so every stage's
side effect (a line appended to a file outside the store) must happen exactly once.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from eleanor_cloud.backends.local import LocalBackend
from eleanor_cloud.store import StateStore
from tests.reliability.conftest import size
from tests.reliability.harness import (
    PREFIX,
    RelState,
    check_task,
    check_write_log,
    finish,
    parse_effects,
    read_log,
    spawn_worker,
    stage_names,
    wait_until,
    worker_result,
)

PROCESSES = size(6, 16)
STAGES = size(5, 10)
ROUNDS = size(1, 5)


def _race(
    tmp_path: Path,
    store_spec: dict[str, Any],
    store: StateStore,
    summary: Callable[..., None],
    label: str,
) -> None:
    outcomes: Counter[str] = Counter()
    problems: list[str] = []
    for round_no in range(ROUNDS):
        task_id = f"race-{round_no}-{uuid.uuid4().hex[:8]}"
        work = tmp_path / task_id
        work.mkdir()
        effects = work / "effects"
        procs = []
        for i in range(PROCESSES):
            spec = {
                "store": store_spec,
                "task_id": task_id,
                "stages": STAGES,
                "effects": str(effects),
                "log": str(work / f"log-{i}"),
                # A long lease (nothing crashes here); waiters poll every ttl/4.
                "gate": {"ready": str(work / f"ready-{i}"), "go": str(work / "go")},
                "lease_ttl": 6.0,
                "wait_for_lease": 60.0 if i % 2 else 0.0,
            }
            procs.append((spawn_worker(spec, work / f"spec-{i}.json"), work / f"spec-{i}.json"))
        wait_until(
            lambda w=work: len(list(w.glob("ready-*"))) == PROCESSES, 60, "every racer at the gate"
        )
        (work / "go").touch()
        for i, (proc, spec_path) in enumerate(procs):
            code = finish(proc)
            result = worker_result(spec_path)
            outcomes[result["outcome"]] += 1
            if code != 0 or result["outcome"] not in ("complete", "lease_held"):
                problems.append(f"{task_id} worker {i}: exit {code} {result}")
            if i % 2 and result["outcome"] != "complete":
                problems.append(f"{task_id} waiting worker {i} did not complete: {result}")
        check = check_task(store, task_id, STAGES, effects)
        problems += [f"{task_id}: {p}" for p in check.problems]
        ran = parse_effects(effects)
        for name in stage_names(STAGES):
            if len(ran.get(name, [])) != 1:
                problems.append(f"{task_id} {name}: side effect ran {len(ran.get(name, []))}x")
            if store.load(task_id, name, RelState).attempts != 1:
                problems.append(f"{task_id} {name}: more than one attempt without a crash")
        problems += [
            f"{task_id}: {p}" for p in check_write_log(read_log(sorted(work.glob("log-*"))))
        ]
    summary(
        store=label,
        runs=ROUNDS,
        processes=PROCESSES,
        stages=STAGES,
        outcomes=dict(outcomes),
        effects_per_stage=1 if not problems else "see failures",
        failures=len(problems),
    )
    assert outcomes["complete"] >= ROUNDS
    assert not problems, "\n".join(problems)


def test_race_local(tmp_path: Path, summary: Callable[..., None]) -> None:
    root = tmp_path / "store"
    store = StateStore(LocalBackend(root, fsync=False), PREFIX)
    _race(tmp_path, {"kind": "local", "root": str(root)}, store, summary, "local")


@pytest.mark.usefixtures("atomic_moto")
def test_race_s3(
    tmp_path: Path, moto_server_url: str, s3_bucket: str, summary: Callable[..., None]
) -> None:
    from eleanor_cloud.backends.s3 import S3Backend

    store = StateStore(
        S3Backend(s3_bucket, endpoint_url=moto_server_url, region_name="us-east-1"), PREFIX
    )
    _race(
        tmp_path,
        {"kind": "s3", "bucket": s3_bucket, "endpoint": moto_server_url},
        store,
        summary,
        "s3-moto",
    )
