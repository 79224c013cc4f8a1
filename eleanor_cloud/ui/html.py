"""The page shell and the helpers every page uses. All stored text goes through :func:`esc`.

Stage messages, results, holders and writers are written by whoever can write to the
store, so every one of them is escaped where it enters the HTML, attributes included
(``quote=True``), after control characters are made visible. No page carries inline
script or inline style: the Content-Security-Policy forbids both (see :mod:`.app`), so
colours and sizes come from classes and SVG attributes.
"""

from __future__ import annotations

import html
from datetime import datetime
from urllib.parse import quote, urlencode

from eleanor_cloud.cli.escaping import printable
from eleanor_cloud.cli.render import duration, short_ts
from eleanor_cloud.clock import format_ts, parse_ts

__all__ = [
    "badge",
    "esc",
    "layout",
    "short_ts",
    "since",
    "task_href",
    "ts_cell",
    "url_with",
]

_KNOWN = {"CREATED", "RUNNING", "RETRY", "COMPLETE", "ERROR", "CANCELED", "UNBOUND", "CORRUPT"}


def esc(value: object) -> str:
    """Any value as HTML text: control characters shown as ``\\xNN``, markup escaped."""
    return html.escape(printable(str(value)), quote=True)


def badge(status: str) -> str:
    """A status pill; its colour comes from the stylesheet's ``s-<STATUS>`` class."""
    name = status if status in _KNOWN else "UNKNOWN"
    return f'<span class="badge s-{name}">{esc(status)}</span>'


def task_href(task_id: str) -> str:
    return "/tasks/" + quote(task_id, safe="")


def url_with(path: str, **params: str | None) -> str:
    """``path?k=v`` with the non-empty parameters, encoded (and safe in an attribute)."""
    kept = {k: v for k, v in params.items() if v}
    return esc(path + ("?" + urlencode(kept) if kept else ""))


def since(ts: str | None, now: datetime) -> str:
    """``3m05s ago`` for a stored timestamp (``-`` when missing or unreadable)."""
    if not ts:
        return "-"
    try:
        seconds = (now - parse_ts(ts)).total_seconds()
    except (ValueError, TypeError):
        return "-"
    return f"in {duration(seconds)}" if seconds < 0 else f"{duration(seconds)} ago"


def ts_cell(ts: str | None, now: datetime) -> str:
    """A ``<time>`` with the age shown and the exact UTC time as its tooltip."""
    if not ts:
        return '<span class="muted">-</span>'
    return f'<time datetime="{esc(ts)}" title="{esc(short_ts(ts))}">{esc(since(ts, now))}</time>'


def layout(
    *,
    title: str,
    store: str,
    body: str,
    now: datetime,
    refresh_seconds: int,
    crumbs: str = "",
) -> str:
    """A whole page. Auto-refresh: with JavaScript, ``/static/app.js`` re-fetches the
    page and swaps its ``<main>`` (typing in the search box pauses it); without, the
    ``<noscript>`` meta refresh reloads the page."""
    refresh = ""
    note = "auto-refresh off"
    if refresh_seconds > 0:
        refresh = (
            f'<meta name="eleanor-refresh" content="{refresh_seconds}">'
            f'<noscript><meta http-equiv="refresh" content="{refresh_seconds}"></noscript>'
        )
        note = f"refreshes every {refresh_seconds}s"
    return (
        "<!doctype html>"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · eleanor-cloud</title>"
        '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">'
        '<link rel="stylesheet" href="/static/style.css">'
        f"{refresh}"
        '<script src="/static/app.js" defer></script>'
        "</head><body>"
        '<header class="top"><a class="brand" href="/">'
        '<span class="logo" aria-hidden="true"></span>eleanor-cloud</a>'
        f'<span class="store" title="the store this dashboard reads">{esc(store)}</span>'
        '<span class="ro">read-only</span></header>'
        f'<main data-generated="{esc(format_ts(now))}">'
        f'<nav class="crumbs">{crumbs}</nav>'
        f"{body}"
        f'<footer class="foot">updated <time datetime="{esc(format_ts(now))}">'
        f"{esc(short_ts(format_ts(now)))}</time> · {esc(note)}</footer>"
        "</main></body></html>"
    )
