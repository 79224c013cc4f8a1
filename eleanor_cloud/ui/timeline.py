"""A task's attempts as a Gantt chart: inline SVG drawn here, no JavaScript needed.

One lane per stage (manifest order), one bar per history entry from ``begin_ts`` to
``end_ts``, coloured by how the attempt ended (class ``o-<STATUS>``), and, for a stage
RUNNING now, one open bar from its last write (the RUNNING save that began the attempt)
to now. A compacted entry (many old attempts summarised as one) is one hatched bar.
The time axis is relative to the first attempt's start, with ticks at a round step.
Every bar carries a ``<title>`` (its tooltip) with the attempt, outcome, times and
message, escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from eleanor_cloud.clock import format_ts, parse_ts
from eleanor_cloud.models import StageStatus
from eleanor_cloud.ui.html import esc, short_ts

if TYPE_CHECKING:
    from eleanor_cloud.cli.views import StageView

__all__ = ["Bar", "bars_of", "timeline_svg"]

_WIDTH, _LABEL, _PAD, _AXIS, _LANE, _BAR = 1000, 150, 24, 30, 30, 18
_STEPS = (
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.2,
    0.5,
    1,
    2,
    5,
    10,
    15,
    30,
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
)
_COMPACTED = "compacted: "


@dataclass(frozen=True)
class Bar:
    """One attempt on the chart."""

    stage: str
    lane: int
    attempt: int
    outcome: str  # the entry's end status, or RUNNING for the attempt in flight
    begin: datetime
    end: datetime
    message: str
    compacted: bool = False
    open: bool = False


def _parse(ts: str | None) -> datetime | None:
    try:
        return parse_ts(ts) if ts else None
    except (ValueError, TypeError):
        return None


def bars_of(stages: Sequence[StageView], now: datetime) -> list[Bar]:
    """Every attempt of every stage that has readable times, lane by lane."""
    bars: list[Bar] = []
    for lane, stage in enumerate(stages):
        for entry in stage.history:
            begin, end = _parse(entry.begin_ts), _parse(entry.end_ts)
            if begin is None or end is None:
                continue
            bars.append(
                Bar(
                    stage.name,
                    lane,
                    entry.attempt,
                    entry.end_status.value,
                    begin,
                    max(begin, end),
                    entry.message,
                    compacted=entry.message.startswith(_COMPACTED),
                )
            )
        last = stage.history[-1].attempt if stage.history else 0
        began = _parse(stage.updated_at)
        if stage.status is StageStatus.RUNNING and stage.attempts > last and began is not None:
            bars.append(
                Bar(
                    stage.name,
                    lane,
                    stage.attempts,
                    "RUNNING",
                    began,
                    max(began, now),
                    "",
                    open=True,
                )
            )
    return bars


def _step(span: float) -> float:
    return next((s for s in _STEPS if span / s <= 7), span / 7)


def _label(seconds: float, step: float) -> str:
    if step < 0.1:
        return f"{seconds * 1000:.0f}ms"
    if step < 1:
        return f"{seconds:.1f}s"
    if step < 60:
        return f"{seconds:.0f}s"
    if step < 3600:
        return f"{seconds / 60:.0f}m" if seconds % 60 == 0 else f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.0f}h" if seconds % 3600 == 0 else f"{seconds / 3600:.1f}h"


def _tooltip(bar: Bar) -> str:
    took = (bar.end - bar.begin).total_seconds()
    head = f"{bar.stage} · attempt {bar.attempt} · {bar.outcome}"
    if bar.open:
        head += " (in flight)"
    text = f"{head}\n{bar.begin:%H:%M:%S} → {bar.end:%H:%M:%S} UTC ({took:.2f}s)"
    return f"{text}\n{bar.message}" if bar.message else text


def timeline_svg(stages: Sequence[StageView], now: datetime) -> str:
    """The chart (or a sentence when no stage has run yet)."""
    bars = bars_of(stages, now)
    if not bars:
        return '<p class="muted">No attempts yet: nothing to draw.</p>'
    t0 = min(b.begin for b in bars)
    span = max((max(b.end for b in bars) - t0).total_seconds(), 0.001)
    step = _step(span)
    span = max(span, step)
    plot = _WIDTH - _LABEL - _PAD
    height = _AXIS + _LANE * len(stages) + 8

    def x(at: datetime) -> float:
        return _LABEL + plot * (at - t0).total_seconds() / span

    head = (
        f'<svg class="timeline" viewBox="0 0 {_WIDTH} {height}" width="100%" '
        f'role="img" aria-label="timeline of {len(bars)} attempts" '
        'xmlns="http://www.w3.org/2000/svg">'
    )
    parts = [head]
    for lane, stage in enumerate(stages):
        y = _AXIS + lane * _LANE
        parts.append(
            f'<rect class="lane{" alt" if lane % 2 else ""}" x="0" y="{y}" '
            f'width="{_WIDTH}" height="{_LANE}"/>'
            f'<text class="lane-label" x="{_LABEL - 10}" y="{y + _LANE / 2 + 4}" '
            f'text-anchor="end">{esc(stage.name)}</text>'
        )
    for i in range(int(span / step + 1e-6) + 1):
        tick = i * step
        tx = _LABEL + plot * tick / span
        parts.append(
            f'<line class="tick" x1="{tx:.1f}" y1="{_AXIS - 4}" x2="{tx:.1f}" y2="{height - 8}"/>'
            f'<text class="tick-label" x="{tx:.1f}" y="{_AXIS - 10}" text-anchor="middle">'
            f"+{esc(_label(tick, step))}</text>"
        )
    for bar in bars:
        left = x(bar.begin)
        width = max(x(bar.end) - left, 3.0)
        top = _AXIS + bar.lane * _LANE + (_LANE - _BAR) / 2
        classes = f"bar o-{esc(bar.outcome)}"
        classes += " compacted" if bar.compacted else ""
        classes += " open" if bar.open else ""
        parts.append(
            f'<rect class="{classes}" x="{left:.1f}" y="{top:.1f}" width="{width:.1f}" '
            f'height="{_BAR}" rx="3" data-stage="{esc(bar.stage)}" data-attempt="{bar.attempt}" '
            f'data-outcome="{esc(bar.outcome)}"><title>{esc(_tooltip(bar))}</title></rect>'
        )
    parts.append("</svg>")
    legend = "".join(
        f'<span class="key"><i class="swatch o-{s}"></i>{s.lower()}</span>'
        for s in ("COMPLETE", "RETRY", "ERROR", "CANCELED", "RUNNING")
    )
    caption = (
        f'<p class="timeline-caption">from {esc(short_ts(format_ts(t0)))}'
        f" · {len(bars)} attempt{'s' if len(bars) != 1 else ''} · {legend}</p>"
    )
    return f'<div class="timeline-wrap">{"".join(parts)}</div>{caption}'
