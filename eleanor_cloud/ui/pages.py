"""The task table page and the error page, as HTML strings (no I/O here)."""

from __future__ import annotations

from datetime import datetime

from eleanor_cloud.ui.data import STATUS_FILTERS, TablePage
from eleanor_cloud.ui.html import badge, esc, layout, task_href, ts_cell, url_with

__all__ = ["error_page", "table_page"]


def _filters(status: str | None, prefix: str) -> str:
    links = []
    for name in (None, *STATUS_FILTERS):
        label = name.lower() if name else "all"
        current = ' aria-current="page"' if name == status else ""
        css = f"chip s-{name}" if name else "chip"
        links.append(
            f'<a class="{css}" href="{url_with("/", status=name, q=prefix)}"{current}>'
            f"{esc(label)}</a>"
        )
    return (
        '<div class="toolbar">'
        f'<div class="chips" role="group" aria-label="status filter">{"".join(links)}</div>'
        '<form class="search" method="get" action="/" role="search">'
        + (f'<input type="hidden" name="status" value="{esc(status)}">' if status else "")
        + '<input type="search" name="q" placeholder="task id starts with…" '
        f'value="{esc(prefix)}" aria-label="search by task id prefix" autocomplete="off" '
        'spellcheck="false"><button type="submit">Search</button></form></div>'
    )


def _progress(done: int, total: int) -> str:
    if total == 0:
        return '<span class="muted">-</span>'
    pct = 100.0 * done / total
    return (
        f'<span class="stage-count" title="{done} of {total} stages complete">'
        f'<svg class="mini" viewBox="0 0 100 6" preserveAspectRatio="none" aria-hidden="true">'
        f'<rect class="track" width="100" height="6" rx="3"/>'
        f'<rect class="fill" width="{pct:.1f}" height="6" rx="3"/></svg>'
        f"<span>{done}/{total}</span></span>"
    )


def table_page(
    page: TablePage,
    *,
    store: str,
    status: str | None,
    prefix: str,
    after: str | None,
    now: datetime,
    refresh_seconds: int,
) -> str:
    """The task table with its filters, search box and paging links."""
    what = (f"{status.lower()} " if status else "all ") + "tasks"
    if prefix:
        what += f" whose id starts with “{prefix}”"
    rows = []
    for r in page.rows:
        message = (
            f'<span class="msg" title="{esc(r.message)}">{esc(r.message)}</span>'
            if r.message
            else ""
        )
        rows.append(
            '<tr class="task-row" data-status="' + esc(r.status) + '">'
            f'<td><a class="id" href="{esc(task_href(r.task_id))}">{esc(r.task_id)}</a></td>'
            f"<td>{badge(r.status)}</td>"
            f'<td class="mono">{esc(r.current_stage or "-")}</td>'
            f"<td>{_progress(r.stages_done, r.stages_total)}</td>"
            f'<td class="num">{r.attempts}</td>'
            f"<td>{ts_cell(r.updated_at, now)}</td>"
            f"<td>{message}</td></tr>"
        )
    if rows:
        table = (
            '<table class="tasks"><thead><tr><th>Task</th><th>Status</th><th>Current stage</th>'
            '<th>Stages</th><th class="num">Attempts</th><th>Updated</th><th>Last message</th>'
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        )
    else:
        table = f'<div class="empty">No {esc(what)}{" on this page" if after else ""}.</div>'
    notice = f'<p class="notice">{esc(page.notice)}</p>' if page.notice else ""
    pager = []
    if after:
        pager.append(f'<a class="btn" href="{url_with("/", status=status, q=prefix)}">« First</a>')
    if page.next_after:
        pager.append(
            f'<a class="btn" rel="next" href="'
            f'{url_with("/", status=status, q=prefix, after=page.next_after)}">Next »</a>'
        )
    where = f" after <span class='mono'>{esc(after)}</span>" if after else ""
    body = (
        f'<h1>Tasks <span class="sub">{esc(what)}{where}</span></h1>'
        f"{_filters(status, prefix)}{notice}{table}"
        f'<div class="pager">{"".join(pager)}</div>'
    )
    return layout(title="Tasks", store=store, body=body, now=now, refresh_seconds=refresh_seconds)


def error_page(
    *, title: str, message: str, store: str, now: datetime, hint: str = "", refresh_seconds: int = 0
) -> str:
    """What went wrong, in words (never a traceback), with a way back; a failure that
    may pass (the store unreachable) refreshes like the page it replaces."""
    body = (
        f'<section class="error-box"><h1>{esc(title)}</h1>'
        f'<p class="mono">{esc(message)}</p>'
        + (f"<p>{esc(hint)}</p>" if hint else "")
        + '<p><a class="btn" href="/">« All tasks</a></p></section>'
    )
    return layout(title=title, store=store, body=body, now=now, refresh_seconds=refresh_seconds)
