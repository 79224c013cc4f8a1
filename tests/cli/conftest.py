"""Fixtures for the CLI tests: a local store in a temp dir, seeded without the engine."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Sequence
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import eleanor_cloud as ec
from eleanor_cloud.clock import format_ts, parse_ts, utc_now
from eleanor_cloud.models import StageStateHistoryEntry, StageStatus
from eleanor_cloud.store.records import Lease, Record, TaskManifest

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
    # ... and mark it in the task index, as the engine's status changes would have.
    from datetime import UTC, datetime

    from eleanor_cloud.engine.indexing import task_status_of
    from eleanor_cloud.store import index_markers

    status = task_status_of(names, {name: st for name, st, _ in stages})
    index_markers.put_marker(store, status, task_id, datetime(2026, 11, 30, tzinfo=UTC))


def seed_lease(
    store: ec.StateStore,
    task_id: str,
    *,
    expires_at: str,
    epoch: int = 3,
    released: bool = False,
    holder: str = "otherhost/4242/deadbeef",
    replaces: Record[Lease] | None = None,
) -> None:
    # A lease taken (or last renewed) just now whose TTL ends at expires_at: a
    # challenger watches an unreleased lease for its ttl_seconds before taking it over,
    # so a TTL longer than the time to expiry would make takeover tests wait for it.
    now = utc_now()
    ttl = max(1.0, (parse_ts(expires_at) - now).total_seconds())
    store.write_lease(
        Lease(
            task_id=task_id,
            holder=holder,
            epoch=epoch,
            acquired_at=format_ts(parse_ts(expires_at) - timedelta(seconds=ttl)),
            expires_at=expires_at,
            ttl_seconds=ttl,
            released=released,
        ),
        replaces=replaces,
    )


# What a hostile writer stores: colour, an 8-bit CSI (clear screen), a bell, an OSC
# window title, a carriage return that would overwrite the line, and rich markup.
HOSTILE = "\x1b[31mRED\x07 \x9b2J \x1b]0;pwned\x07 over\rwrite [bold]b[/bold]"
SHOWN = "\\x1b[31mRED\\x07 \\x9b2J \\x1b]0;pwned\\x07 over\\x0dwrite [bold]b[/bold]"
HOLDER = "evil\x1b[31m\x07\x9bhost/1/x"


@pytest.fixture
def hostile(store: ec.StateStore) -> ec.StateStore:
    """Task ``evil``: a failed stage whose message, a finished one whose result, and a
    lease whose holder carry control characters and rich markup (HOSTILE, HOLDER)."""
    from datetime import timedelta

    from eleanor_cloud.clock import format_ts, utc_now
    from eleanor_cloud.store.records import TaskManifest

    store.create_manifest(
        TaskManifest(
            task_id="evil",
            stages=("first", "second"),
            state_class="tests.cli.conftest.SeedState",
            created_at="2026-11-30T00:00:00.000000Z",
        )
    )
    entry = StageStateHistoryEntry(
        attempt=1,
        begin_status=StageStatus.CREATED,
        end_status=StageStatus.ERROR,
        begin_ts="2026-11-30T01:00:00.000000Z",
        end_ts="2026-11-30T01:00:01.000000Z",
        message=HOSTILE,
        run_time_seconds=1.0,
    )
    store.create(
        SeedState(
            task_id="evil",
            stage_name="first",
            status=StageStatus.ERROR,
            attempts=1,
            history=[entry],
            result=None,
        )
    )
    store.create(
        ec.BaseStageState[dict[str, str]](
            task_id="evil",
            stage_name="second",
            status=StageStatus.COMPLETE,
            attempts=1,
            result={"note": HOSTILE},
        )
    )
    seed_lease(store, "evil", expires_at=format_ts(utc_now() + timedelta(hours=1)), holder=HOLDER)
    return store


@functools.cache
def published_schema(kind: str) -> dict[str, Any]:
    """The committed JSON Schema of the document ``kind`` (what users validate against)."""
    text = resources.files("eleanor_cloud.cli").joinpath("schemas", f"{kind}.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def assert_valid_document(doc: dict[str, Any]) -> None:
    """``doc`` (a parsed ``--json`` output) validates against its kind's published schema."""
    import jsonschema

    jsonschema.Draft202012Validator(published_schema(doc["kind"])).validate(doc)


@pytest.fixture(autouse=True)
def _every_json_document_matches_its_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ``--json`` document a test prints in-process is checked against the
    published schema of its kind, so no command can drift from what users validate."""
    from eleanor_cloud.cli.output import Output

    printed = Output.json

    def checked(self: Output, doc: Any) -> None:
        printed(self, doc)
        assert_valid_document(doc.model_dump(mode="json", by_alias=True))

    monkeypatch.setattr(Output, "json", checked)


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
