"""A loopback shim that lets obstore's GCS uploads reach fake-gcs-server's JSON API.

obstore (object_store) writes to GCS with the XML API: ``PUT /<bucket>/<object>`` with
``x-goog-if-generation-match`` (``0`` to create, the generation to compare-and-swap),
and reads the new generation from the ``x-goog-generation`` answer header.
fake-gcs-server routes an XML ``PUT`` only as a signed-URL upload and ignores its
preconditions, so it can take none of obstore's writes (``test_gcs.py`` pins that). It
enforces preconditions on its JSON multipart upload, so this shim translates exactly
one request, the ``PUT``: into ``POST /upload/storage/v1/b/<bucket>/o?uploadType=
multipart&ifGenerationMatch=<n>`` and its answer back into the XML API's headers (the
status, 412 included, is passed through). Every other request (GET, HEAD, DELETE, the
XML listing) is forwarded as is: fake-gcs-server serves those like GCS.

So a test through the shim checks our GCS path (generation as the version, create and
compare-and-swap as preconditions, the error translation) against fake-gcs-server's
own precondition checks; it does not check obstore's wire format for PUT, which the
shim assumes is GCS's documented XML API.
"""

from __future__ import annotations

import http.client
import http.server
import json
import threading
import uuid
from types import TracebackType
from urllib.parse import quote, unquote, urlsplit

from tests.support.servers import free_port

__all__ = ["GcsXmlShim"]

_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class GcsXmlShim:
    """``with GcsXmlShim(fake_gcs_url) as shim:`` then point obstore at ``shim.url``."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        shim = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return

            def do_PUT(self) -> None:
                shim._put(self)

            def do_GET(self) -> None:
                shim._forward(self)

            def do_HEAD(self) -> None:
                shim._forward(self)

            def do_DELETE(self) -> None:
                shim._forward(self)

            def do_POST(self) -> None:
                shim._forward(self)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> GcsXmlShim:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- requests ----------------------------------------------------------------------

    def _upstream(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self._host, self._port, timeout=30)

    @staticmethod
    def _body(handler: http.server.BaseHTTPRequestHandler) -> bytes:
        length = int(handler.headers.get("Content-Length") or 0)
        return handler.rfile.read(length) if length else b""

    def _forward(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        body = self._body(handler)
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP}
        # fake-gcs-server routes the XML API by its public host, which is its own address.
        headers["Host"] = f"{self._host}:{self._port}"
        conn = self._upstream()
        try:
            conn.request(handler.command, handler.path, body=body or None, headers=headers)
            answer = conn.getresponse()
            payload = answer.read()
            self._reply(handler, answer.status, list(answer.getheaders()), payload)
        finally:
            conn.close()

    def _put(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        data = self._body(handler)
        bucket, _, name = unquote(urlsplit(handler.path).path).lstrip("/").partition("/")
        query = f"uploadType=multipart&name={quote(name, safe='')}"
        match = handler.headers.get("x-goog-if-generation-match")
        if match is not None:
            query += f"&ifGenerationMatch={match}"
        boundary = uuid.uuid4().hex
        content_type = handler.headers.get("Content-Type") or "application/octet-stream"
        metadata = json.dumps({"name": name, "contentType": content_type}).encode()
        body = b"".join(
            [
                f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n".encode(),
                metadata,
                f"\r\n--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode(),
                data,
                f"\r\n--{boundary}--\r\n".encode(),
            ]
        )
        conn = self._upstream()
        try:
            conn.request(
                "POST",
                f"/upload/storage/v1/b/{quote(bucket, safe='')}/o?{query}",
                body=body,
                headers={"Content-Type": f"multipart/related; boundary={boundary}"},
            )
            answer = conn.getresponse()
            payload = answer.read()
        finally:
            conn.close()
        if answer.status != 200:
            self._reply(handler, answer.status, list(answer.getheaders()), payload)
            return
        resource = json.loads(payload)
        headers = [
            ("x-goog-generation", str(resource["generation"])),
            ("ETag", f'"{resource.get("md5Hash", resource["generation"])}"'),
        ]
        self._reply(handler, 200, headers, b"")

    @staticmethod
    def _reply(
        handler: http.server.BaseHTTPRequestHandler,
        status: int,
        headers: list[tuple[str, str]],
        payload: bytes,
    ) -> None:
        handler.send_response(status)
        length = str(len(payload))
        for key, value in headers:
            if key.lower() == "content-length" and handler.command == "HEAD":
                length = value  # a HEAD answer describes the object it did not send
            elif key.lower() not in _HOP:
                handler.send_header(key, value)
        handler.send_header("Content-Length", length)
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(payload)
