"""Scenario 6 — clock skew: holders whose wall clocks differ by more than the lease TTL.

What the lease may assume: every host's clock runs at (nearly) the same *rate* — a
second is a second, within ``clock_skew_tolerance`` over one TTL. It may not assume the
clocks agree on the *time*: a container with a stale clock, a laptop off NTP, a VM
resumed from a snapshot. So a challenger must not decide that a lease expired by
comparing the holder's ``expires_at`` with its own wall clock; it may take over only
after it has itself watched the lease stay unchanged (same version, so no renewal) for
a full TTL on its own clock. Whatever the clocks say, fencing keeps the store safe; this
scenario is about not stealing a live lease — which would run a stage twice.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from eleanor_cloud.backends.local import LocalBackend
from eleanor_cloud.clock import format_ts, utc_now
from eleanor_cloud.engine import Backoff, TaskEngine
from eleanor_cloud.errors import LeaseHeld
from eleanor_cloud.models import StageStatus
from eleanor_cloud.store import Lease, StateStore
from tests.reliability.conftest import size
from tests.reliability.harness import (
    PREFIX,
    RelState,
    check_task,
    make_stages,
    parse_effects,
    wait_for,
)

TTL = 1.0
ROUNDS = size(1, 3)


def skewed(offset: float) -> Callable[[], datetime]:
    return lambda: utc_now() + timedelta(seconds=offset)


def engine(
    task_id: str,
    store: StateStore,
    effects: Path,
    *,
    clock: Callable[[], datetime],
    wait: float = 0.0,
    block: Path | None = None,
    events: list[str] | None = None,
) -> TaskEngine[RelState]:
    return TaskEngine(
        task_id,
        make_stages(3, effects, block_stage=0 if block else None, block=block),
        RelState,
        StateStore(store.backend, PREFIX, clock=clock),
        lease_ttl=TTL,
        wait_for_lease=wait,
        clock=clock,
        clock_skew_tolerance=0.0,
        backoff=Backoff(initial=0.01),
        on_event=(lambda ev: events.append(ev.kind)) if events is not None else None,
    )


@pytest.mark.parametrize("offset", [3 * TTL, 3600.0])
def test_a_clock_ahead_cannot_steal_a_live_lease(
    tmp_path: Path, offset: float, summary: Callable[..., None]
) -> None:
    attempts = steals = 0
    problems: list[str] = []
    for _ in range(ROUNDS):
        store = StateStore(LocalBackend(tmp_path / "store", fsync=False), PREFIX)
        task_id = f"skew-{uuid.uuid4().hex[:8]}"
        effects, block = tmp_path / f"{task_id}.effects", tmp_path / f"{task_id}.block"
        holder_events: list[str] = []
        holder = engine(task_id, store, effects, clock=utc_now, block=block, events=holder_events)
        outcome: dict[str, Any] = {}

        def run_holder(h: TaskEngine[RelState] = holder, out: dict[str, Any] = outcome) -> None:
            try:
                out["summary"] = h.run()
            except Exception as exc:
                out["error"] = exc

        thread = threading.Thread(target=run_holder)
        thread.start()
        try:
            wait_for(Path(f"{block}.ready"))
            # Its clock says the holder's lease ran out long ago; the holder is renewing.
            for wait in (0.0, 2.5 * TTL):
                attempts += 1
                challenger = engine(task_id, store, effects, clock=skewed(offset), wait=wait)
                try:
                    challenger.run()
                except LeaseHeld:
                    continue
                steals += 1
        finally:
            Path(f"{block}.go").touch()
            thread.join(60)
        if "error" in outcome:
            problems.append(f"the holder failed: {outcome['error']!r}")
        elif outcome["summary"].status is not StageStatus.COMPLETE:
            problems.append(f"the holder ended {outcome['summary'].status}")
        if "lease_lost" in holder_events:
            problems.append("the holder lost its live lease")
        problems += check_task(store, task_id, 3, effects).problems
        problems += [
            f"{name}: side effect ran {len(ran)} times"
            for name, ran in parse_effects(effects).items()
            if len(ran) != 1
        ]
    summary(
        runs=ROUNDS,
        offset_seconds=offset,
        lease_ttl=TTL,
        challenges=attempts,
        live_leases_stolen=steals,
        failures=len(problems),
    )
    assert steals == 0
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("offset", [-10 * TTL, 10 * TTL])
def test_a_dead_lease_is_taken_over_whatever_the_clocks_say(
    tmp_path: Path, offset: float, summary: Callable[..., None]
) -> None:
    """Liveness: a challenger whose clock is far behind the dead holder's still takes
    the task over, after watching the lease not move for a TTL on its own clock."""
    store = StateStore(LocalBackend(tmp_path / "store", fsync=False), PREFIX)
    task_id = f"dead-{uuid.uuid4().hex[:8]}"
    effects = tmp_path / "effects"
    engine(task_id, store, effects, clock=utc_now).bind()
    now = utc_now()
    store.write_lease(
        Lease(
            task_id=task_id,
            holder="crashed-host/1",
            epoch=1,
            acquired_at=format_ts(now),
            expires_at=format_ts(now + timedelta(seconds=TTL)),
            ttl_seconds=TTL,
        ),
        replaces=None,
    )
    events: list[str] = []
    result = engine(
        task_id, store, effects, clock=skewed(offset), wait=6 * TTL, events=events
    ).run()
    summary(
        offset_seconds=offset,
        lease_ttl=TTL,
        took_over="lease_takeover" in events,
        failures=int(result.status is not StageStatus.COMPLETE),
    )
    assert result.status is StageStatus.COMPLETE
    assert "lease_takeover" in events
    assert check_task(store, task_id, 3, effects).problems == []
