"""The dashboard as a Starlette application: GET routes only, hardened headers.

``create_app(store)`` serves ``/`` (the task table), ``/tasks/<id>`` (one task),
``/static/<file>`` (stylesheet, script, icon, from the package) and ``/healthz`` (no
store request). Every other method is refused with 405 before any route runs, and a
request whose Host is not one the server answers to is refused with 421, so a web page
elsewhere cannot reach this server through DNS rebinding. Every response carries a
Content-Security-Policy that allows only this server's own script and stylesheet (no
inline script, no inline style), ``X-Content-Type-Options: nosniff``, no framing and no
referrer. Failures become an HTML page that says what went wrong and names the store,
never a traceback; unexpected ones are logged on the server's side.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from importlib.resources import files
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eleanor_cloud.clock import utc_now
from eleanor_cloud.errors import BackendError, EleanorError, InvalidKey, NotFound
from eleanor_cloud.ui import data
from eleanor_cloud.ui.pages import error_page, table_page
from eleanor_cloud.ui.task_page import task_page

if TYPE_CHECKING:
    from eleanor_cloud.store.state_store import StateStore

__all__ = ["LOOPBACK_HOSTS", "SECURITY_HEADERS", "create_app"]

log = logging.getLogger("eleanor_cloud.ui")

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cache-control": "no-store",
}
_STATIC = {
    "style.css": "text/css; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}


def _host_name(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"host":
            host = str(value.decode("latin-1")).strip().lower()
            if host.startswith("["):  # [::1]:8765
                return host[1 : host.find("]")] if "]" in host else host
            return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return ""


class _Guard:
    """Refuses non-GET methods and unknown Host headers; adds the security headers."""

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str]) -> None:
        self.app = app
        self.hosts = {h.lower().strip("[]") for h in allowed_hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.decode("latin-1").lower() not in SECURITY_HEADERS
                ]
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        refusal: Response | None = None
        if scope["method"] not in ("GET", "HEAD"):
            refusal = PlainTextResponse(
                "this dashboard is read-only: only GET and HEAD are allowed\n",
                status_code=405,
                headers={"allow": "GET, HEAD"},
            )
        elif "*" not in self.hosts and _host_name(scope) not in self.hosts:
            refusal = PlainTextResponse(
                "unknown Host: this server answers to "
                + ", ".join(sorted(self.hosts))
                + " (eleanor-cloud ui --allow-host adds a name)\n",
                status_code=421,
            )
        if refusal is not None:
            await refusal(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)


def create_app(
    store: StateStore,
    *,
    refresh_seconds: int = 5,
    page_size: int = 50,
    allowed_hosts: Iterable[str] | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> ASGIApp:
    """The read-only dashboard over ``store``. ``refresh_seconds=0`` turns auto-refresh
    off; ``allowed_hosts`` are the Host names it answers to (default: loopback names;
    ``"*"``: any)."""
    label = data.store_label(store)
    static = {
        name: files("eleanor_cloud.ui").joinpath("static", name).read_bytes() for name in _STATIC
    }

    def page(html: str, status: int = 200) -> HTMLResponse:
        return HTMLResponse(html, status_code=status)

    def failure(exc: BaseException, what: str) -> HTMLResponse:
        now = clock()
        if isinstance(exc, NotFound):
            return page(
                error_page(
                    title="Not found", message=f"no {what} in {label}", store=label, now=now
                ),
                404,
            )
        if isinstance(exc, InvalidKey):
            return page(
                error_page(title="Bad request", message=str(exc), store=label, now=now), 400
            )
        if isinstance(exc, BackendError):
            return page(
                error_page(
                    title="The store cannot be read",
                    message=str(exc),
                    store=label,
                    now=now,
                    hint=f"Store: {label}. Check that it is reachable and that these "
                    "credentials may read it; this page retries on its own.",
                    refresh_seconds=refresh_seconds,
                ),
                503,
            )
        if isinstance(exc, EleanorError):  # CorruptState, ...
            return page(
                error_page(title=f"{what} cannot be read", message=str(exc), store=label, now=now),
                500,
            )
        log.error("dashboard: unexpected error reading %s", what, exc_info=exc)
        return page(
            error_page(
                title="Unexpected error",
                message=f"{type(exc).__name__} while reading {what}",
                store=label,
                now=now,
                hint="The server's log has the details.",
            ),
            500,
        )

    def tasks(request: Request) -> Response:
        params = request.query_params
        status = (params.get("status") or "").upper() or None
        prefix = (params.get("q") or "").strip()
        after = params.get("after") or None
        try:
            found = data.task_table(
                store, status=status, prefix=prefix, after=after, limit=page_size
            )
        except Exception as exc:  # noqa: BLE001 - shown as a page, logged if unexpected
            return failure(exc, f"the task list of {label}")
        return page(
            table_page(
                found,
                store=label,
                status=status,
                prefix=prefix,
                after=after,
                now=clock(),
                refresh_seconds=refresh_seconds,
            )
        )

    def task(request: Request) -> Response:
        task_id = str(request.path_params["task_id"])
        try:
            view = data.load_task(store, task_id)
        except Exception as exc:  # noqa: BLE001 - shown as a page, logged if unexpected
            return failure(exc, f"task {task_id!r}")
        return page(task_page(view, store=label, now=clock(), refresh_seconds=refresh_seconds))

    def asset(request: Request) -> Response:
        name = str(request.path_params["name"])
        if name not in static:
            return PlainTextResponse("no such file\n", status_code=404)
        return Response(static[name], media_type=_STATIC[name])

    def healthz(_request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def not_found(request: Request, _exc: Any) -> Response:
        message = f"no page at {request.url.path}"
        return page(error_page(title="Not found", message=message, store=label, now=clock()), 404)

    app = Starlette(
        routes=[
            Route("/", tasks, methods=["GET"]),
            Route("/tasks/{task_id}", task, methods=["GET"]),
            Route("/static/{name}", asset, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        exception_handlers={404: not_found},
    )
    return _Guard(app, LOOPBACK_HOSTS if allowed_hosts is None else allowed_hosts)
