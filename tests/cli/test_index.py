"""``tasks --status/--prefix/--since/--scan`` over the task index, and ``index rebuild``."""

from __future__ import annotations

import json
from typing import Any

import eleanor_cloud as ec
from eleanor_cloud.models import StageStatus as S
from eleanor_cloud.store import index_markers
from tests.cli.conftest import seed_task


def _ids(result: Any) -> list[str]:
    return [t["task_id"] for t in json.loads(result.stdout)["tasks"]]


def test_status_prefix_and_since_come_from_the_index(store: ec.StateStore, invoke: Any) -> None:
    for i in range(6):
        seed_task(store, f"t{i}", [("only", S.ERROR if i % 3 == 0 else S.COMPLETE, 1)])
    assert _ids(invoke("tasks", "--status", "error", "--json")) == ["t0", "t3"]
    assert _ids(invoke("tasks", "--status", "complete", "--prefix", "t4", "--json")) == ["t4"]
    # the seeded markers changed on 2026-11-30: long before an hour ago, after 2026-11-01
    assert _ids(invoke("tasks", "--since", "1h", "--json")) == []
    since = invoke("tasks", "--status", "error", "--since", "2026-11-01T00:00:00Z", "--json")
    assert _ids(since) == ["t0", "t3"]
    assert json.loads(since.stdout)["filter"]["since"].startswith("2026-11-01T00:00:00")


def test_a_stale_marker_is_counted_never_shown_and_rebuild_tidies_it(
    store: ec.StateStore, invoke: Any
) -> None:
    from datetime import UTC, datetime

    seed_task(store, "ok", [("only", S.COMPLETE, 1)])
    # A crash between a write-ahead mark and its state write leaves this behind.
    index_markers.put_marker(store, S.ERROR, "ok", datetime(2026, 11, 1, tzinfo=UTC))
    listed = invoke("tasks", "--status", "error", "--json")
    assert _ids(listed) == []
    assert "1 index entry did not match" in listed.stderr
    rebuilt = invoke("index", "rebuild", "--json")
    assert json.loads(rebuilt.stdout)["removed"] == 1
    assert "did not match" not in invoke("tasks", "--status", "error").stderr


def test_a_store_written_before_the_index_scans_or_rebuilds(
    store: ec.StateStore, invoke: Any, store_dir: Any
) -> None:
    seed_task(store, "old", [("only", S.ERROR, 1)])
    for key in list(store.backend.list("_index/")):
        store.backend.delete(key)
    assert _ids(invoke("tasks", "--status", "error", "--json")) == []
    assert _ids(invoke("tasks", "--status", "error", "--scan", "--json")) == ["old"]
    assert "1 tasks; 1 marker(s) written" in invoke("index", "rebuild").stdout
    assert _ids(invoke("tasks", "--status", "error", "--json")) == ["old"]


def test_bad_filters_are_usage_errors(invoke: Any) -> None:
    assert "neither a duration" in invoke("tasks", "--since", "yesterday").stderr
    assert invoke("tasks", "--status", "retry").exit_code == 2
    assert "only letters" in invoke("tasks", "--prefix", "a/b").stderr
    assert "--since needs the task index" in invoke("tasks", "--since", "1h", "--scan").stderr
