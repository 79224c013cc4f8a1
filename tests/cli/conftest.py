"""Fixtures for the CLI tests: a local store in a temp dir, seeded without the engine."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import eleanor_cloud as ec
from eleanor_cloud.backends.base import CREATE
from eleanor_cloud.clock import format_ts, parse_ts, utc_now
from eleanor_cloud.models import StageStateHistoryEntry, StageStatus
from eleanor_cloud.store.records import Lease, TaskManifest

BIN = Path(sys.executable).parent


class SeedState(ec.BaseStageState[ec.SimpleRecordsResult]):
    """A user's state class the CLI has never heard of (it reads it as AnyStageState)."""

    note: str = ""


def history(n: int, end: StageStatus, message: str = "ok") -> list[StageStateHistoryEntry]:
    """``n`` history entries, the last ending in ``end`` (earlier ones in RETRY)."""
    entries = []
    for attempt in range(1, n + 1):
        last = attempt == n
        entries.append(
            StageStateHistoryEntry(
                attempt=attempt,
                begin_status=StageStatus.CREATED if attempt == 1 else StageStatus.RETRY,
                end_status=end if last else StageStatus.RETRY,
                begin_ts=f"2026-11-30T01:00:0{attempt}.000000Z",
                end_ts=f"2026-11-30T01:00:0{attempt}.500000Z",
                message=message if last else f"boom {attempt}",
                run_time_seconds=0.5,
            )
        )
    return entries


def seed_task(
    store: ec.StateStore,
    task_id: str,
    stages: Sequence[tuple[str, StageStatus, int]],
    extra_stages: Sequence[str] = (),
) -> None:
    """Write a manifest and the given stage states (status, attempts) like the engine would."""
    names = tuple(name for name, _, _ in stages) + tuple(extra_stages)
    store.create_manifest(
        TaskManifest(
            task_id=task_id,
            stages=names,
            state_class="tests.cli.conftest.SeedState",
            created_at="2026-11-30T00:00:00.000000Z",
        )
    )
    for name, status, attempts in stages:
        if status is StageStatus.CREATED and attempts == 0:
            continue  # a bound stage with no object reads as CREATED
        result = None
        if status is StageStatus.COMPLETE:
            result = ec.SimpleRecordsResult(
                total_count=10,
                success_count=8,
                fail_count=1,
                unprocessed_count=1,
                message=f"{name} done",
            )
        end = StageStatus.RETRY if status is StageStatus.RUNNING else status
        store.create(
            SeedState(
                task_id=task_id,
                stage_name=name,
                status=status,
                attempts=attempts,
                history=history(attempts, end) if attempts else [],
                result=result,
                note="kept",
            )
        )


def seed_lease(
    store: ec.StateStore, task_id: str, *, expires_at: str, epoch: int = 3, released: bool = False
) -> None:
    # A lease taken (or last renewed) just now whose TTL ends at expires_at: a
    # challenger watches an unreleased lease for its ttl_seconds before taking it over,
    # so a TTL longer than the time to expiry would make takeover tests wait for it.
    now = utc_now()
    ttl = max(1.0, (parse_ts(expires_at) - now).total_seconds())
    store.epoch = epoch
    store.write_lease(
        Lease(
            task_id=task_id,
            holder="otherhost/4242/deadbeef",
            epoch=epoch,
            acquired_at=format_ts(parse_ts(expires_at) - timedelta(seconds=ttl)),
            expires_at=expires_at,
            ttl_seconds=ttl,
            released=released,
        ),
        CREATE,
    )
    store.epoch = 0


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def store(store_dir: Path) -> ec.StateStore:
    return ec.open_store(str(store_dir))


@pytest.fixture
def cli_env(store_dir: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment for subprocess runs: the temp store, no colour, no inherited store."""
    env = dict(os.environ)
    env["ELEANOR_STORE"] = str(store_dir)
    env["NO_COLOR"] = "1"
    env.pop("AWS_ENDPOINT_URL_S3", None)
    return env


@pytest.fixture
def invoke(store_dir: Path):  # type: ignore[no-untyped-def]
    """Run the CLI in-process against the temp store: ``invoke("status", "t")``."""
    from eleanor_cloud.cli.app import cli

    def run(*args: str, input: str | None = None, env: dict[str, Any] | None = None) -> Result:
        runner = CliRunner()
        return runner.invoke(
            cli, ["--store", str(store_dir), *args], input=input, env=env, catch_exceptions=False
        )

    return run
