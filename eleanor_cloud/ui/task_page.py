"""One task's page: summary, lease, timeline of attempts, stages, records progress, shards."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from eleanor_cloud.cli.render import duration, summarize_result
from eleanor_cloud.ui.html import badge, esc, layout, short_ts, ts_cell
from eleanor_cloud.ui.timeline import timeline_svg

if TYPE_CHECKING:
    from eleanor_cloud.cli.records_view import ProgressView
    from eleanor_cloud.cli.shard_view import FanoutView
    from eleanor_cloud.cli.views import LeaseView, StageView, TaskView

__all__ = ["task_page"]


def _fact(label: str, value: str) -> str:
    return f"<div><dt>{esc(label)}</dt><dd>{value}</dd></div>"


def _lease(lease: LeaseView | None, now: datetime) -> str:
    if lease is None:
        return '<span class="muted">none: not run yet, or deleted</span>'
    value = lease.lease
    if value.released:
        state, css = "released", "lease-free"
    elif lease.broken:
        state, css = "broken: the next run takes over", "lease-dead"
    elif lease.expired:
        state, css = f"expired {duration(lease.seconds_left)} ago", "lease-dead"
    else:
        state, css = f"live, {duration(lease.seconds_left)} left", "lease-live"
    return (
        f'<span class="mono holder">{esc(value.holder)}</span> · epoch {value.epoch} · '
        f'expires <time datetime="{esc(value.expires_at)}">{esc(short_ts(value.expires_at))}'
        f'</time> <span class="pill {css}">{esc(state)}</span>'
    )


def _segments(parts: list[tuple[str, int]], total: int, label: str) -> str:
    """A horizontal bar split into classed segments (SVG attributes, no inline style)."""
    x, rects = 0.0, []
    for css, count in parts:
        if count <= 0 or total <= 0:
            continue
        width = 100.0 * count / total
        rects.append(
            f'<rect class="{css}" x="{x:.2f}" width="{width:.2f}" height="10">'
            f"<title>{esc(f'{count:,} {css}')}</title></rect>"
        )
        x += width
    return (
        f'<svg class="bar-records" viewBox="0 0 100 10" preserveAspectRatio="none" '
        f'role="img" aria-label="{esc(label)}"><rect class="track" width="100" height="10"/>'
        f"{''.join(rects)}</svg>"
    )


def _progress(task_id: str, stage: StageView, view: ProgressView) -> str:
    p = view.progress
    total = view.total if view.total is not None else (p.offered if p.exhausted else None)
    known = total if total is not None else max(p.offered, view.done, 1)
    head = (
        f"{view.done:,} / {total:,} records"
        if total is not None
        else f"{view.done:,} done of {p.offered:,} read so far (total unknown)"
    )
    pct = f"{100 * view.done / total:.0f}%" if total else ""
    notes = [f"last checkpoint {esc(short_ts(view.checkpointed_at))}"]
    if p.suspended:
        notes.append(f"suspended in attempt {p.attempt}: the next run resumes here")
    if view.retry_pending:
        notes.append(f"{view.retry_pending:,} failed records of earlier attempts to retry")
    if view.failed_ids:
        notes.append(
            f"{view.failed_ids:,} failed ids: <code>eleanor-cloud failed {esc(task_id)} "
            f"{esc(stage.name)}</code>"
        )
    bar = _segments(
        [("ok", view.ok), ("fail", view.fail), ("unprocessed", view.unprocessed)],
        known,
        f"{stage.name}: {head}",
    )
    return (
        f'<div class="records" data-stage="{esc(stage.name)}">'
        f'<div class="records-head"><span class="mono">{esc(stage.name)}</span>'
        f"<span>{esc(head)}</span><strong>{pct}</strong></div>{bar}"
        f'<div class="counts"><span class="k ok">ok {view.ok:,}</span>'
        f'<span class="k fail">fail {view.fail:,}</span>'
        f'<span class="k unprocessed">unprocessed {view.unprocessed:,}</span></div>'
        f'<p class="muted small">{" · ".join(notes)}</p></div>'
    )


def _fanout(stage: StageView, fan: FanoutView) -> str:
    total = len(fan.shards)
    bar = _segments([("ok", fan.ended)], total, f"{fan.ended} of {total} shards ended")
    return (
        f'<div class="records fanout" data-stage="{esc(stage.name)}">'
        f'<div class="records-head"><span class="mono">{esc(stage.name)}</span>'
        f"<span>fanned out: {fan.ended:,} of {total:,} shards ended</span>"
        f"<strong>{100 * fan.ended / total:.0f}%</strong></div>{bar}"
        f'<p class="muted small">per-shard detail: <code>eleanor-cloud status '
        f"{esc(fan.plan.task_id)} --shards</code></p></div>"
    )


def _result(result: Any) -> str:
    if result is None:
        return '<span class="muted">-</span>'
    full = json.dumps(result, indent=2, sort_keys=True, default=str)
    short = summarize_result(result, width=48)
    return (
        f'<details class="result"><summary class="mono">{esc(short)}</summary>'
        f"<pre>{esc(full)}</pre></details>"
    )


def _stage_rows(view: TaskView, now: datetime) -> str:
    rows = []
    for s in view.stages:
        last = s.history[-1] if s.history else None
        message = (
            f'<div class="msg-full">{esc(last.message)}</div>' if last and last.message else ""
        )
        took = f"{last.run_time_seconds:.2f}s" if last else "-"
        rows.append(
            f'<tr class="stage-row" data-stage="{esc(s.name)}" data-status="{s.status.value}">'
            f'<td class="mono">{esc(s.name)}</td><td>{badge(s.status.value)}</td>'
            f'<td class="num">{s.attempts}</td><td class="num">{esc(took)}</td>'
            f"<td>{ts_cell(s.updated_at, now)}</td><td>{message}</td>"
            f"<td>{_result(s.result)}</td></tr>"
        )
    return (
        '<table class="stages"><thead><tr><th>Stage</th><th>Status</th>'
        '<th class="num">Attempts</th><th class="num">Last run</th><th>Updated</th>'
        "<th>Last message</th><th>Result</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _history(view: TaskView) -> str:
    rows = [
        f"<tr><td class='mono'>{esc(s.name)}</td><td class='num'>{e.attempt}</td>"
        f"<td>{badge(e.begin_status.value)}</td><td>{badge(e.end_status.value)}</td>"
        f"<td>{esc(short_ts(e.begin_ts))}</td><td class='num'>{e.run_time_seconds:.2f}s</td>"
        f"<td><div class='msg-full'>{esc(e.message)}</div></td></tr>"
        for s in view.stages
        for e in s.history
    ]
    if not rows:
        return ""
    return (
        f'<details class="card history"><summary><h2>History</h2> '
        f'<span class="muted">{len(rows)} entr{"y" if len(rows) == 1 else "ies"}</span></summary>'
        '<table class="stages"><thead><tr><th>Stage</th><th class="num">Attempt</th>'
        '<th>From</th><th>To</th><th>Began</th><th class="num">Ran</th><th>Message</th></tr>'
        f"</thead><tbody>{''.join(rows)}</tbody></table></details>"
    )


def task_page(view: TaskView, *, store: str, now: datetime, refresh_seconds: int) -> str:
    """The whole task page."""
    current = view.current
    where = ""
    if current is not None:
        label = {"ERROR": "failed at", "CANCELED": "canceled at"}.get(
            view.status.value, "next stage"
        )
        where = f'<span class="where">{esc(label)} <b class="mono">{esc(current.name)}</b></span>'
    facts = [
        _fact("Created", esc(short_ts(view.manifest.created_at))),
        _fact("Updated", ts_cell(view.updated_at, now)),
        _fact("Attempts", str(view.attempts)),
        _fact("State class", f'<span class="mono">{esc(view.manifest.state_class)}</span>'),
        _fact("Lease", _lease(view.lease, now)),
    ]
    facts += [
        _fact(f"metadata · {key}", f'<span class="mono">{esc(value)}</span>')
        for key, value in sorted(view.manifest.metadata.items())
    ]
    records = []
    for s in view.stages:
        if s.progress is not None:
            records.append(_progress(view.task_id, s, s.progress))
        if s.fanout is not None:
            records.append(_fanout(s, s.fanout))
        if s.progress_error is not None:
            records.append(
                f'<p class="notice">progress of <span class="mono">{esc(s.name)}</span> '
                f"cannot be read: {esc(s.progress_error)}</p>"
            )
    extra = (
        f'<p class="notice">objects for stages not in the manifest: '
        f"{esc(', '.join(view.extra_stages))}</p>"
        if view.extra_stages
        else ""
    )
    body = (
        f'<div class="title-row"><h1 class="mono task-id">{esc(view.task_id)}</h1>'
        f"{badge(view.status.value)}{where}</div>"
        f'<dl class="facts">{"".join(facts)}</dl>'
        f'<section class="card"><h2>Timeline</h2>{timeline_svg(view.stages, now)}</section>'
        + (f'<section class="card"><h2>Records</h2>{"".join(records)}</section>' if records else "")
        + f'<section class="card"><h2>Stages</h2>{_stage_rows(view, now)}{extra}</section>'
        + _history(view)
    )
    crumbs = (
        f'<a href="/">Tasks</a> <span>&rsaquo;</span> <span class="mono">{esc(view.task_id)}</span>'
    )
    return layout(
        title=view.task_id,
        store=store,
        body=body,
        now=now,
        refresh_seconds=refresh_seconds,
        crumbs=crumbs,
    )
