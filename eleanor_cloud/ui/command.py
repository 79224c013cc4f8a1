"""``eleanor-cloud ui``: serve the read-only dashboard with uvicorn (extra ``[ui]``).

Starlette and uvicorn are imported when the command runs, so ``eleanor-cloud --help``
and every other command work without them; without them this command says what to
install and exits 2.
"""

from __future__ import annotations

import click

from eleanor_cloud.cli.common import CliContext, echo_err, fail, pass_cli
from eleanor_cloud.cli.exits import EXIT_FAILED, EXIT_USAGE

__all__ = ["COMMANDS", "UI_EXTRA_MODULES", "ui_cmd"]

UI_EXTRA_MODULES = frozenset({"starlette", "uvicorn"})
INSTALL_HINT = "pip install 'eleanor-cloud[ui]'"
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


@click.command("ui")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port", type=click.IntRange(1, 65535), default=8765, show_default=True, help="Port to bind."
)
@click.option(
    "--refresh",
    "refresh_seconds",
    type=click.IntRange(0, 3600),
    default=5,
    show_default=True,
    help="Seconds between automatic refreshes (0: off).",
)
@click.option(
    "--page-size", type=click.IntRange(1, 500), default=50, show_default=True, help="Tasks a page."
)
@click.option(
    "--allow-host",
    "allow_hosts",
    multiple=True,
    metavar="NAME",
    help="Also answer to this Host name (behind a proxy or tunnel under another name).",
)
@pass_cli
def ui_cmd(
    state: CliContext,
    host: str,
    port: int,
    refresh_seconds: int,
    page_size: int,
    allow_hosts: tuple[str, ...],
) -> None:
    """Serve a read-only web dashboard of the store's tasks on http://HOST:PORT/.

    A task table (status filters, search by id prefix, paging), and for each task its
    stages, attempts, results, lease, a timeline of attempts and records progress. It
    only reads (GET routes; other methods are refused) and binds 127.0.0.1 unless told
    otherwise: reach a remote machine's dashboard through an SSH tunnel. See docs/ui.md.
    """
    try:
        import uvicorn

        from eleanor_cloud.ui.app import create_app
    except ModuleNotFoundError as exc:
        root = (exc.name or "").partition(".")[0]
        if root not in UI_EXTRA_MODULES:
            raise
        fail(
            f"the dashboard needs {root!r}, which is not installed; install it with: "
            f"{INSTALL_HINT}",
            EXIT_USAGE,
        )
    from eleanor_cloud.ui.data import store_label

    store = state.store
    hosts = {*_LOOPBACK, host, *allow_hosts}
    app = create_app(
        store, refresh_seconds=refresh_seconds, page_size=page_size, allowed_hosts=hosts
    )
    _check_can_listen(host, port)
    if host not in _LOOPBACK:
        echo_err(
            f"eleanor-cloud ui: warning: binding {host}: anyone who can reach this address "
            "can read every task's state (there is no login); prefer 127.0.0.1 and an SSH tunnel"
        )
    shown = f"[{host}]" if ":" in host else host
    echo_err(
        f"eleanor-cloud ui: serving {store_label(store)} at http://{shown}:{port}/ "
        "(read-only; Ctrl-C to stop)"
    )
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    except SystemExit as exc:  # uvicorn exits 3 when it cannot start; 3 means "budget" here
        if exc.code not in (None, 0):
            raise click.exceptions.Exit(EXIT_FAILED) from None


def _check_can_listen(host: str, port: int) -> None:
    """Fail with one line (exit 1) when the address cannot be bound (in use, no such
    interface), before uvicorn would log its own error and exit 3."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(infos[0][4])
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}", EXIT_FAILED)


COMMANDS = (ui_cmd,)
