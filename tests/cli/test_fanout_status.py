"""``status`` of a fanned-out stage (issue 17), built with the engine on the local store:
the shards that ended from the ``done/`` listing alone, every shard with ``--shards``
(status, records, attempts, live holder; unfinished first, at most 50 rows), the same in
``--json`` (validated against the published schema by the autouse fixture), and what
each costs in requests."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from eleanor_cloud import keys
from eleanor_cloud.clock import format_ts, utc_now
from eleanor_cloud.store import StateStore
from eleanor_cloud.store.records import Lease
from tests.cli.conftest import HOLDER
from tests.cli.fanout_tasks import Fan, build
from tests.engine.conftest import CountingBackend

SHOWN_HOLDER = "evil\\x1b[31m\\x07\\x9bhost/1/x"


def lease_shard(store: StateStore, shard: str, holder: str = HOLDER) -> None:
    """A live worker holds ``shard`` for the next hour."""
    now = utc_now()
    store.write_lease(
        Lease(
            task_id="t",
            holder=holder,
            epoch=1,
            acquired_at=format_ts(now),
            expires_at=format_ts(now + timedelta(hours=1)),
            ttl_seconds=3600.0,
        ),
        replaces=None,
        key=keys.shard_lease_key(store.prefix, "t", "fan", shard),
    )


@pytest.fixture
def half_done(store: StateStore) -> StateStore:
    """4 shards of 25: s0 and s1 COMPLETE, s2 suspended after 10 records, s3 never run
    but leased by a live (hostile) holder."""
    assert not build("t", store).run().done  # plans the stage, marks it RUNNING
    for shard in ("s0", "s1"):
        assert build("t", store).run_shard("fan", shard).done
    fan = Fan(4, 25, 0.0, None)
    engine = build("t", store, fan)
    seen: list[str] = []

    def stop_after_ten(_shard: str, record: str) -> None:
        seen.append(record)
        if len(seen) == 10:
            engine.request_stop("test stop")

    fan.on_record = stop_after_ten
    summary = engine.run_shard("fan", "s2")
    assert not summary.done and "test stop" in summary.message
    lease_shard(store, "s3")
    return store


def test_status_counts_ended_shards_from_the_done_markers(half_done: StateStore, invoke) -> None:
    result = invoke("status", "t")
    assert result.exit_code == 0, result.output
    line = next(x for x in result.stdout.splitlines() if x.startswith("fan-out of fan"))
    assert line.startswith("fan-out of fan: 4 shards (plan ")
    assert line.endswith(": 2 ended, 2 not ended; per shard: eleanor-cloud status t --shards")
    assert "SHARD" not in result.stdout  # no table without --shards


def test_status_shards_lists_every_shard_unfinished_first(half_done: StateStore, invoke) -> None:
    result = invoke("status", "t", "--shards")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    total = next(x for x in lines if x.startswith("fan-out of fan"))
    assert ": 1 CREATED, 1 RUNNING, 2 COMPLETE; " in total
    assert "60/? records (ok 60, fail 0)" in total  # s3's total is not known yet
    assert total.endswith("1 held by a live worker")
    header = lines.index(next(x for x in lines if x.startswith("SHARD")))
    rows = [x.split() for x in lines[header + 1 : header + 5]]
    assert [r[0] for r in rows] == ["s2", "s3", "s0", "s1"]
    assert rows[0][:6] == ["s2", "RUNNING", "10/25", "10", "0", "1"]
    assert "suspended: the next run resumes it" in lines[header + 1]
    assert rows[1][:7] == ["s3", "CREATED", "-", "-", "-", "0", SHOWN_HOLDER]
    assert rows[2][:6] == ["s0", "COMPLETE", "25/25", "25", "0", "1"]
    assert "\x1b" not in result.stdout and "\x9b" not in result.stdout


def _fan_row(doc: dict[str, Any]) -> dict[str, Any]:
    stages = {s["name"]: s for s in doc["stages"]}
    assert stages["after"]["fanout"] is None and stages["after"]["shards"] is None
    row: dict[str, Any] = stages["fan"]
    return row


def test_status_json_has_the_shards(half_done: StateStore, invoke) -> None:
    plain = _fan_row(json.loads(invoke("status", "t", "--json").stdout))
    assert plain["fanout"]["shards"] == 4 and plain["fanout"]["ended"] == 2
    assert plain["fanout"]["detailed"] is False and plain["fanout"]["done"] is None
    assert [(s["id"], s["ended"], s["status"]) for s in plain["shards"]] == [
        ("s0", True, None),
        ("s1", True, None),
        ("s2", False, None),
        ("s3", False, None),
    ]

    detailed = _fan_row(json.loads(invoke("status", "t", "--shards", "--json").stdout))
    fanout = detailed["fanout"]
    assert fanout["statuses"] == {"CREATED": 1, "RUNNING": 1, "COMPLETE": 2}
    assert (fanout["done"], fanout["total"], fanout["ok"], fanout["live_holders"]) == (
        60,
        None,
        60,
        1,
    )
    by_id = {s["id"]: s for s in detailed["shards"]}
    assert by_id["s2"]["suspended"] is True and by_id["s2"]["done"] == 10
    assert by_id["s2"]["total"] == 25 and by_id["s2"]["holder"] is None
    assert by_id["s3"]["holder"] == HOLDER and by_id["s3"]["lease_expires_at"]
    assert by_id["s0"]["status"] == "COMPLETE" and by_id["s0"]["attempts"] == 1


def test_what_status_reads_of_a_fanned_out_stage(half_done: StateStore) -> None:
    from eleanor_cloud.cli.views import load_task_view

    counting = CountingBackend(half_done.backend)
    store = StateStore(counting, half_done.prefix)
    stage = keys.scope_prefix(store.prefix, "t", "fan")

    def under(op: str, sub: str) -> int:
        return sum(1 for o, k in counting.log if o == op and k.startswith(stage + sub))

    load_task_view(store, "t")
    assert under("read", "plan.json") == 1 and under("list", "done/") == 1
    assert under("read", "shards/") == 0 and under("read", "done/") == 0
    counting.reset()
    load_task_view(store, "t", with_shards=True)
    assert under("read", "plan.json") == 1 and under("list", "done/") == 1
    assert under("read", "shards/") == 3 * 4  # state, progress and lease of each shard
    assert under("read", "done/") == 0
    counting.reset()
    load_task_view(store, "t", with_progress=False)  # what 'tasks' reads
    assert under("read", "") == under("list", "") == 0


def test_shard_rows_are_bounded_in_plain_output(store: StateStore, invoke) -> None:
    assert not build("t", store, Fan(60, 1, 0.0, None)).run().done
    assert build("t", store, Fan(60, 1, 0.0, None)).run_shard("fan", "s7").done
    result = invoke("status", "t", "--shards")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    header = lines.index(next(x for x in lines if x.startswith("SHARD")))
    rows = [x for x in lines[header + 1 :] if x.startswith("s")]
    assert len(rows) == 50 and "s7" not in {r.split()[0] for r in rows}
    assert (
        "... and 10 more shards (1 COMPLETE); all of them: eleanor-cloud status t --shards --json"
        in lines
    )
    doc = _fan_row(json.loads(invoke("status", "t", "--shards", "--json").stdout))
    assert len(doc["shards"]) == 60


def test_a_corrupt_plan_is_reported_on_its_stage(half_done: StateStore, invoke) -> None:
    from eleanor_cloud.backends.base import Replace

    key = keys.plan_key(half_done.prefix, "t", "fan")
    _, version = half_done.backend.read(key)
    half_done.backend.write(key, b"{not json", Replace(version))
    result = invoke("status", "t")
    assert result.exit_code == 0, result.output
    assert "progress of fan: cannot be read: fan-out plan: " in result.stdout
    doc = json.loads(invoke("status", "t", "--json").stdout)
    assert _fan_row(doc)["progress_error"].startswith("fan-out plan: ")
