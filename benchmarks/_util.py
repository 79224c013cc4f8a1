"""Shared pieces: fake AWS credentials, a moto server process, request logs, statistics,
interleaved A/B rounds and table printing."""

from __future__ import annotations

import math
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

REGION = "us-east-1"


def fake_aws_env() -> None:
    """Fake credentials before boto3 is imported: nothing here can reach a real account."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        os.environ[name] = value
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        os.environ.pop(name, None)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_SERVER_CODE = """
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=int(sys.argv[1]), verbose=False)
server.start()
sys.stdin.read()  # runs until the parent closes our stdin (or dies)
server.stop()
"""


@contextmanager
def moto_server() -> Iterator[str]:
    """A ``ThreadedMotoServer`` on a free 127.0.0.1 port, in its own process.

    Its own process on purpose: in-process, the server's request handling would compete
    with the code under measurement for our GIL, which a real S3 (another machine)
    never does. Yields the endpoint URL.
    """
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVER_CODE, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the moto server did not start") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def new_bucket(client: Any, label: str) -> str:
    """A fresh bucket: moto lists by scanning a whole bucket, so sections must not share."""
    name = f"bench-{label}-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=name)
    return name


# -- request logs ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    """One request as it left botocore (retries are separate requests)."""

    operation: str  # PutObject, GetObject, ListObjectsV2, DeleteObject, PutItem...
    key: str  # object key; a LIST's prefix; "" for non-S3 calls
    condition: str  # "if-none-match", "if-match" or ""
    body_bytes: int


@dataclass
class RequestLog:
    """Counts what a boto3 client sends, via the ``before-send`` event (once per attempt
    on the wire, so a retried request counts twice, as it should)."""

    bucket: str = ""
    requests: list[Request] = field(default_factory=list)

    def attach(self, client: Any, service: str = "s3") -> RequestLog:
        client.meta.events.register(f"before-send.{service}", self._on_send)
        return self

    def detach(self, client: Any, service: str = "s3") -> None:
        client.meta.events.unregister(f"before-send.{service}", self._on_send)

    def _on_send(self, request: Any, event_name: str, **_: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        headers = {k.lower(): v for k, v in request.headers.items()}
        condition = (
            "if-none-match"
            if "if-none-match" in headers
            else "if-match"
            if "if-match" in headers
            else ""
        )
        # The body is a stream by now (checksums wrap it); over https (mock_aws) it is
        # aws-chunked with a trailing checksum, and only this header has the real size.
        length = headers.get("x-amz-decoded-content-length", headers.get("content-length", 0))
        size = int(length.decode() if isinstance(length, bytes) else length)
        key = ""
        url = urlsplit(request.url)
        if operation.endswith("Object"):
            path = unquote(url.path).lstrip("/")
            host = url.hostname or ""
            if ".s3." in host or ".s3-" in host:
                key = path  # virtual-hosted style (mock_aws): the bucket is in the host
            else:
                # Path style (an endpoint URL such as the moto server): "<bucket>/<key>".
                key = path.split("/", 1)[1] if "/" in path else ""
        elif operation == "ListObjectsV2":
            key = parse_qs(url.query).get("prefix", [""])[0]  # the listed prefix
        self.requests.append(Request(operation, key, condition, size))

    def clear(self) -> None:
        self.requests.clear()

    def take(self) -> list[Request]:
        taken, self.requests = self.requests, []
        return taken


def by_operation(requests: Sequence[Request]) -> dict[str, int]:
    return dict(sorted(Counter(r.operation for r in requests).items()))


def is_task_object(key: str) -> bool:
    """The manifest and the lease, as opposed to stage states."""
    return key.endswith(("/_task.json", "/_lease.json"))


# -- timing ----------------------------------------------------------------------------


def interleaved(
    variants: dict[str, Callable[[], Any]],
    rounds: int,
    warmup: int = 1,
    cpu: dict[str, list[float]] | None = None,
) -> dict[str, list[float]]:
    """Wall time (seconds) of each variant per round, variants interleaved.

    The order rotates every round (A B C, B C A, ...) so a drift in machine load, or a
    cache one variant leaves warm for the next, falls on every variant alike. With
    ``cpu``, this process's CPU time (all threads) per call is recorded there too: it
    is what our code costs, and it barely moves when other processes crowd the cores.
    """
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            variants[name]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            cpu_start, start = time.process_time(), time.perf_counter()
            variants[name]()
            times[name].append(time.perf_counter() - start)
            if cpu is not None:
                cpu.setdefault(name, []).append(time.process_time() - cpu_start)
    return times


def paired_ratio(a: Sequence[float], b: Sequence[float]) -> float:
    """Median of the per-round ratios a[i]/b[i]: rounds run back to back, so a slow
    drift in machine load cancels within each pair."""
    return round(statistics.median(x / y for x, y in zip(a, b, strict=True)), 3)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def summary(values: Sequence[float]) -> dict[str, float | int]:
    """Median with the interquartile range, all in milliseconds."""
    ms = sorted(v * 1000 for v in values)
    q = statistics.quantiles(ms, n=4) if len(ms) >= 2 else [ms[0], ms[0], ms[0]]
    return {
        "median_ms": round(statistics.median(ms), 3),
        "p25_ms": round(q[0], 3),
        "p75_ms": round(q[2], 3),
        "n": len(ms),
    }


def ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("nan")


def target(name: str, limit: str, value: Any, met: bool, note: str = "") -> dict[str, Any]:
    return {"name": name, "target": limit, "value": value, "met": bool(met), "note": note}


# -- output ----------------------------------------------------------------------------


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table (also valid Markdown)."""
    cells = [[str(h) for h in header]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        return (
            "| "
            + " | ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
            + " |"
        )

    out = [f"### {title}", "", line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in cells[1:]]
    return "\n".join(out) + "\n"


def targets_table(targets: Sequence[dict[str, Any]]) -> str:
    rows = [
        [t["name"], t["target"], t["value"], "met" if t["met"] else "NOT MET", t["note"]]
        for t in targets
    ]
    return table("targets", ["target", "limit", "measured", "verdict", "note"], rows)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def warm_probe(store: Any) -> int:
    """Pay the S3 backend's once-per-process conditions probe up front, so a section
    measures steady-state requests; returns how many requests the probe made (0 when
    the backend has none or this process already probed the bucket)."""
    probe = getattr(store.backend, "probe_conditions", None)
    if probe is None:
        return 0
    from eleanor_cloud.backends.s3 import clear_probe_cache

    clear_probe_cache()
    client = store.backend.client
    log = RequestLog().attach(client)  # 3 on a new prefix, 2 once the probe object exists
    try:
        probe()
    finally:
        log.detach(client)
    return len(log.requests)
