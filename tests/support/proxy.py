"""A fault-injecting HTTP/1.1 proxy on 127.0.0.1, put between a client and a real peer.

Every request the client sends is parsed, shown to the rules, and then forwarded,
answered without forwarding, held, delayed or dropped. Typical use::

    with FaultProxy(moto_server_url) as proxy:
        client = boto3.client("s3", endpoint_url=proxy.url)
        # the next PUT reaches the server, but the client never hears the answer
        proxy.inject(FORWARD_THEN_DROP, when=matching(method="PUT"))
        ...
        assert proxy.count(method="PUT") == 2

Rules are consulted in order: one-shot injections (``inject``, each applies ``times``
times to matching requests), then the standing ``rule`` callable (return an action or
``None``), else the request is forwarded. Actions:

- ``Forward()``: pass the request on, pass the answer back. ``Forward(strip_headers=...)``
  removes those headers on the way, like a middlebox that drops what it does not know;
  the ``strip_conditions`` rule does that to ``If-None-Match``/``If-Match`` on PUTs (an
  S3-compatible store that ignores conditions, as seen from the client).
- ``ForwardThenDrop()``: the server applies the request; the client's connection is
  closed before any answer (the ambiguous outcome of a lost response).
- ``ForwardThenTruncate(keep)``: the client gets the answer's headers (with the full
  ``Content-Length``) and only ``keep`` bytes of its body, then the connection closes.
- ``Drop()``: close the client's connection; the server never sees the request.
- ``Respond(status, code, message)``: answer without forwarding (an S3-style XML error
  when ``code`` is given): 500, 503 SlowDown, 403 AccessDenied...
- ``Delay(seconds, then)`` / ``Hold(event, then)``: wait, then do ``then``. ``Hold``
  waits for a ``threading.Event`` so a test controls the interleaving exactly.

``log`` records every request with what was done and the status answered (``None``
when the client got nothing), so a test can count what really reached the server.
Connections to the peer are kept alive per client connection, like a real proxy.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import socket
import socketserver
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import BinaryIO
from urllib.parse import unquote, urlsplit
from xml.sax.saxutils import escape

__all__ = [
    "DROP",
    "FORWARD",
    "FORWARD_THEN_DROP",
    "STRIP_CONDITIONS",
    "Action",
    "Delay",
    "Drop",
    "FaultProxy",
    "Forward",
    "ForwardThenDrop",
    "ForwardThenTruncate",
    "Hold",
    "LogEntry",
    "ProxyRequest",
    "Respond",
    "matching",
    "strip_conditions",
]

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "expect",
    "content-length",
    "proxy-connection",
    "te",
    "upgrade",
}
_MAX_LINE = 65536


@dataclass(frozen=True)
class ProxyRequest:
    """One parsed request: method, target (path and query), headers and body."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    index: int

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        for key, value in self.headers:
            if key.lower() == lowered:
                return value
        return None

    @property
    def path(self) -> str:
        return unquote(urlsplit(self.target).path)

    @property
    def query(self) -> str:
        return urlsplit(self.target).query

    @property
    def bucket(self) -> str:
        """The bucket of a path-style S3 request (``""`` for the service root)."""
        return self.path.lstrip("/").partition("/")[0]

    @property
    def key(self) -> str:
        """The object key of a path-style S3 request (``""`` for bucket-level calls)."""
        return self.path.lstrip("/").partition("/")[2]


@dataclass(frozen=True)
class Forward:
    """Pass the request to the peer (without ``strip_headers``) and its answer back."""

    strip_headers: tuple[str, ...] = ()

    def apply(self, request: ProxyRequest) -> ProxyRequest:
        """The request as the peer receives it."""
        if not self.strip_headers:
            return request
        drop = {name.lower() for name in self.strip_headers}
        kept = tuple((k, v) for k, v in request.headers if k.lower() not in drop)
        return dataclasses.replace(request, headers=kept)


@dataclass(frozen=True)
class ForwardThenDrop:
    """The peer applies the request; the client's connection closes unanswered."""


@dataclass(frozen=True)
class ForwardThenTruncate:
    """The peer answers; the client gets the headers and only ``keep`` body bytes."""

    keep: int = 0


@dataclass(frozen=True)
class Drop:
    """Close the client's connection without forwarding the request."""


@dataclass(frozen=True)
class Respond:
    """Answer ``status`` without forwarding; an S3 XML error body when ``code`` is set."""

    status: int
    code: str = ""
    message: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None

    def render(self) -> tuple[tuple[tuple[str, str], ...], bytes]:
        body = self.body
        headers = list(self.headers)
        if body is None and self.code:
            body = (
                '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>'
                f"{escape(self.code)}</Code><Message>{escape(self.message)}</Message>"
                "<RequestId>fault-proxy</RequestId></Error>"
            ).encode()
            headers.append(("Content-Type", "application/xml"))
        return tuple(headers), body or b""


@dataclass(frozen=True)
class Delay:
    """Wait ``seconds`` (a fault, not synchronisation), then do ``then``."""

    seconds: float
    then: Action = field(default_factory=Forward)


@dataclass(frozen=True)
class Hold:
    """Wait until ``event`` is set (at most ``timeout`` seconds), then do ``then``."""

    event: threading.Event
    then: Action = field(default_factory=Forward)
    timeout: float = 30.0


Action = Forward | ForwardThenDrop | ForwardThenTruncate | Drop | Respond | Delay | Hold
Rule = Callable[[ProxyRequest], "Action | None"]
FORWARD = Forward()
FORWARD_THEN_DROP = ForwardThenDrop()
DROP = Drop()
STRIP_CONDITIONS = Forward(strip_headers=("If-None-Match", "If-Match"))


def strip_conditions(request: ProxyRequest) -> Action | None:
    """A standing rule: PUTs reach the peer without their conditional headers."""
    return STRIP_CONDITIONS if request.method == "PUT" else None


@dataclass(frozen=True)
class LogEntry:
    """What the proxy did with one request; ``status`` is what the client received."""

    request: ProxyRequest
    action: str
    forwarded: bool
    status: int | None


def matching(
    method: str | None = None,
    *,
    key: str | None = None,
    key_suffix: str | None = None,
    header: str | None = None,
    query: str | None = None,
) -> Callable[[ProxyRequest], bool]:
    """A predicate on requests: all given conditions must hold.

    ``header`` matches when the request carries that header (e.g. ``"If-Match"``);
    ``query`` when the query string contains that text (e.g. ``"list-type=2"``).
    """

    def predicate(request: ProxyRequest) -> bool:
        return (
            (method is None or request.method == method.upper())
            and (key is None or request.key == key)
            and (key_suffix is None or request.key.endswith(key_suffix))
            and (header is None or request.header(header) is not None)
            and (query is None or query in request.query)
        )

    return predicate


@dataclass
class _Injection:
    action: Action
    when: Callable[[ProxyRequest], bool]
    remaining: int


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False


class FaultProxy:
    """A threaded loopback proxy to ``upstream`` (``http://127.0.0.1:port``)."""

    def __init__(
        self, upstream: str, rule: Rule | None = None, *, upstream_timeout: float = 30.0
    ) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"upstream must be http://host:port, got {upstream!r}")
        self._upstream = (parts.hostname, parts.port)
        self._upstream_timeout = upstream_timeout
        self.rule = rule
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._injections: list[_Injection] = []
        self._log: list[LogEntry] = []
        self._counter = 0
        self._settled = 0  # requests read and then answered, dropped or abandoned
        self._sockets: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy._serve(self.request)

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fault-proxy",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the proxy is not running: call start() first")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- rules and log -----------------------------------------------------------------

    def inject(
        self, action: Action, *, when: Callable[[ProxyRequest], bool] | None = None, times: int = 1
    ) -> None:
        """Apply ``action`` to the next ``times`` requests matching ``when`` (any if None)."""
        with self._lock:
            self._injections.append(_Injection(action, when or (lambda _r: True), times))

    def pending(self) -> int:
        """How many injected actions have not fired yet."""
        with self._lock:
            return sum(i.remaining for i in self._injections)

    def clear(self) -> None:
        """Forget injections, the standing rule and the log."""
        with self._lock:
            self._injections.clear()
            self._log.clear()
            self.rule = None

    @property
    def log(self) -> list[LogEntry]:
        with self._lock:
            return list(self._log)

    def requests(
        self, method: str | None = None, *, forwarded: bool | None = None, key: str | None = None
    ) -> list[LogEntry]:
        """Log entries filtered by method, whether they reached the peer, and key."""
        return [
            e
            for e in self.log
            if (method is None or e.request.method == method.upper())
            and (forwarded is None or e.forwarded == forwarded)
            and (key is None or e.request.key == key)
        ]

    def count(
        self, method: str | None = None, *, forwarded: bool | None = None, key: str | None = None
    ) -> int:
        return len(self.requests(method, forwarded=forwarded, key=key))

    def _decide(self, request: ProxyRequest) -> Action:
        with self._lock:
            for injection in self._injections:
                if injection.remaining > 0 and injection.when(request):
                    injection.remaining -= 1
                    if injection.remaining == 0:
                        self._injections.remove(injection)
                    return injection.action
            rule = self.rule
        action = rule(request) if rule is not None else None
        return action if action is not None else FORWARD

    def _record(
        self, request: ProxyRequest, action: Action, forwarded: bool, status: int | None
    ) -> None:
        with self._lock:
            self._log.append(LogEntry(request, type(action).__name__, forwarded, status))
            self._changed.notify_all()

    def wait_until(
        self, predicate: Callable[[list[LogEntry]], bool], timeout: float = 30.0
    ) -> list[LogEntry]:
        """Block until ``predicate(log)`` holds (e.g. a held request was forwarded)."""
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(list(self._log)), timeout):
                raise TimeoutError(f"proxy log never satisfied the condition: {self._log}")
            return list(self._log)

    def wait_settled(self, timeout: float = 30.0) -> None:
        """Block until every request read so far is done with (answered, dropped, or
        abandoned), so no delayed request can still reach the peer after this returns."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._settled >= self._counter, timeout):
                raise TimeoutError(
                    f"{self._counter - self._settled} request(s) still in flight through the proxy"
                )

    # -- the connection loop -----------------------------------------------------------

    def _serve(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)
        rfile = sock.makefile("rb")
        upstream: http.client.HTTPConnection | None = None
        try:
            while True:
                request = self._read_request(rfile, sock)
                if request is None:
                    return
                try:
                    action = self._decide(request)
                    while isinstance(action, Delay | Hold):
                        if isinstance(action, Delay):
                            threading.Event().wait(action.seconds)
                        else:
                            action.event.wait(action.timeout)
                        action = action.then
                    if isinstance(action, Drop):
                        self._record(request, action, False, None)
                        return
                    if isinstance(action, Respond):
                        headers, body = action.render()
                        self._record(request, action, False, action.status)
                        self._send(sock, request, action.status, "Fault", headers, body)
                        continue
                    sent = action.apply(request) if isinstance(action, Forward) else request
                    upstream, answer = self._forward(upstream, sent)
                    if isinstance(action, ForwardThenDrop):
                        self._record(request, action, True, None)
                        return
                    status, reason, headers, body = answer
                    # Logged before sending: the client may have given up on this request.
                    self._record(request, action, True, status)
                    if isinstance(action, ForwardThenTruncate):
                        self._send(
                            sock, request, status, reason, headers, body, truncate=action.keep
                        )
                        return
                    self._send(sock, request, status, reason, headers, body)
                finally:
                    with self._lock:
                        self._settled += 1
                        self._changed.notify_all()
        except (OSError, ValueError, http.client.HTTPException):
            return  # the client went away or sent garbage: just close
        finally:
            if upstream is not None:
                upstream.close()
            rfile.close()
            with self._lock:
                self._sockets.discard(sock)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _read_request(self, rfile: BinaryIO, sock: socket.socket) -> ProxyRequest | None:
        line = rfile.readline(_MAX_LINE)
        while line in (b"\r\n", b"\n"):
            line = rfile.readline(_MAX_LINE)
        if not line:
            return None
        method, target, _version = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
        headers: list[tuple[str, str]] = []
        while True:
            raw = rfile.readline(_MAX_LINE)
            if raw in (b"\r\n", b"\n", b""):
                break
            name, _, value = raw.decode("latin-1").partition(":")
            headers.append((name.strip(), value.strip()))
        lowered = {k.lower(): v for k, v in headers}
        if lowered.get("expect", "").lower() == "100-continue":
            # Answer at once, or the client waits a second before sending the body.
            sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        if "chunked" in lowered.get("transfer-encoding", "").lower():
            body = self._read_chunked(rfile)
        else:
            length = int(lowered.get("content-length", "0") or 0)
            body = rfile.read(length) if length else b""
            if len(body) != length:
                return None
        with self._lock:
            self._counter += 1
            index = self._counter
        return ProxyRequest(method.upper(), target, tuple(headers), body, index)

    @staticmethod
    def _read_chunked(rfile: BinaryIO) -> bytes:
        chunks: list[bytes] = []
        while True:
            size = int(rfile.readline(_MAX_LINE).split(b";")[0].strip(), 16)
            if size == 0:
                while rfile.readline(_MAX_LINE) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            chunks.append(rfile.read(size))
            rfile.readline(_MAX_LINE)

    def _forward(
        self, upstream: http.client.HTTPConnection | None, request: ProxyRequest
    ) -> tuple[http.client.HTTPConnection, tuple[int, str, tuple[tuple[str, str], ...], bytes]]:
        headers = {k: v for k, v in request.headers if k.lower() not in _HOP_BY_HOP}
        body = request.body if request.body or request.method in ("PUT", "POST") else None
        reused = upstream is not None
        while True:
            if upstream is None:
                upstream = http.client.HTTPConnection(
                    *self._upstream, timeout=self._upstream_timeout
                )
            try:
                upstream.request(request.method, request.target, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # The peer closed an idle kept-alive connection before reading this
                # request: one fresh connection settles that. A fresh one failing is real.
                upstream.close()
                upstream = None
                if not reused:
                    raise
                reused = False
                continue
            strip = _HOP_BY_HOP - {"content-length"} if request.method == "HEAD" else _HOP_BY_HOP
            answer_headers = tuple(
                (k, v) for k, v in response.getheaders() if k.lower() not in strip
            )
            if response.will_close:
                upstream.close()
                upstream = None
            if upstream is None:
                upstream = http.client.HTTPConnection(
                    *self._upstream, timeout=self._upstream_timeout
                )
            return upstream, (response.status, response.reason, answer_headers, data)

    @staticmethod
    def _send(
        sock: socket.socket,
        request: ProxyRequest,
        status: int,
        reason: str,
        headers: tuple[tuple[str, str], ...],
        body: bytes,
        truncate: int | None = None,
    ) -> None:
        lines = [f"HTTP/1.1 {status} {reason or 'Status'}"]
        lines += [f"{k}: {v}" for k, v in headers]
        if request.method == "HEAD":
            body = b""  # its headers keep the length of the body it does not carry
        else:
            lines.append(f"Content-Length: {len(body)}")
        if truncate is not None:
            body = body[:truncate]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
