"""The timeline's geometry: one bar per attempt, the attempt in flight, odd histories."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from eleanor_cloud.cli.views import StageView
from eleanor_cloud.models import StageStateHistoryEntry
from eleanor_cloud.models import StageStatus as S
from eleanor_cloud.ui.timeline import bars_of, timeline_svg

NOW = datetime(2026, 12, 2, 12, 0, 30, tzinfo=UTC)


def entry(n: int, begin: str, end: str, status: S, message: str = "") -> StageStateHistoryEntry:
    return StageStateHistoryEntry(
        attempt=n,
        begin_status=S.CREATED,
        begin_ts=f"2026-12-02T12:00:{begin}Z",
        end_status=status,
        end_ts=f"2026-12-02T12:00:{end}Z",
        message=message,
        run_time_seconds=1.0,
    )


def stage(
    name: str,
    status: S,
    attempts: int,
    history: list[StageStateHistoryEntry],
    updated: str | None = None,
) -> StageView:
    return StageView(name, status, attempts, history, None, updated, 1, "w")


def test_bars_per_attempt_and_the_one_in_flight() -> None:
    stages = [
        stage("a", S.COMPLETE, 1, [entry(1, "00.0", "02.0", S.COMPLETE)]),
        stage(
            "b",
            S.RUNNING,
            3,
            [entry(1, "02.0", "03.0", S.RETRY, "<b>x</b>"), entry(2, "04.0", "05.0", S.RETRY)],
            updated="2026-12-02T12:00:10.000000Z",
        ),
        stage("c", S.CREATED, 0, []),
    ]
    bars = bars_of(stages, NOW)
    assert [(b.stage, b.attempt, b.outcome, b.open) for b in bars] == [
        ("a", 1, "COMPLETE", False),
        ("b", 1, "RETRY", False),
        ("b", 2, "RETRY", False),
        ("b", 3, "RUNNING", True),
    ]
    assert bars[-1].end == NOW
    svg = timeline_svg(stages, NOW)
    assert svg.count('<rect class="bar ') == 4 and svg.count(" open") == 1
    assert "<b>x</b>" not in svg and "&lt;b&gt;x&lt;/b&gt;" in svg
    ticks = re.findall(r'class="tick-label"[^>]*>\+([^<]+)<', svg)
    assert ticks[0] == "0s" and 4 <= len(ticks) <= 8  # 30 s span: round steps


def test_nothing_run_yet_and_unreadable_times() -> None:
    assert "No attempts yet" in timeline_svg([stage("a", S.CREATED, 0, [])], NOW)
    bad = entry(1, "00.0", "01.0", S.ERROR).model_copy(update={"begin_ts": "not a time"})
    assert bars_of([stage("a", S.ERROR, 1, [bad])], NOW) == []


def test_a_zero_length_attempt_is_still_visible() -> None:
    stages = [stage("a", S.COMPLETE, 1, [entry(1, "00.0", "00.0", S.COMPLETE)])]
    width = float(
        re.search(
            r'class="bar [^"]*" x="[^"]+" y="[^"]+" width="([^"]+)"', timeline_svg(stages, NOW)
        ).group(1)
    )
    assert width >= 3
