"""The reliability campaign's fixtures: campaign size, summaries, atomic moto.

Every scenario runs in ``make test`` at a small but real size. ``make reliability``
sets ``ELEANOR_RELIABILITY=full`` for the full sizes (and ``-s`` to show summaries).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

FULL = os.environ.get("ELEANOR_RELIABILITY", "").lower() == "full"


def size(small: int, full: int) -> int:
    """The campaign size of a scenario: ``small`` in ``make test``, ``full`` otherwise."""
    return full if FULL else small


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.path).startswith(here):
            item.add_marker(pytest.mark.reliability)


@pytest.fixture
def summary(request: pytest.FixtureRequest) -> Iterator[Callable[..., None]]:
    """``summary(runs=..., faults=..., failures=..., **more)``: one printed line per test."""
    lines: list[str] = []

    def report(**fields: Any) -> None:
        text = " ".join(f"{k}={v}" for k, v in fields.items())
        lines.append(f"[reliability {'full' if FULL else 'small'}] {request.node.name}: {text}")

    yield report
    for line in lines:
        print("\n" + line)
        path = os.environ.get("ELEANOR_RELIABILITY_LOG")
        if path:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")


@pytest.fixture
def atomic_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make moto's object requests atomic, as each request is on real S3 (moto checks
    If-Match / If-None-Match and stores the object in two steps: an emulator race, not
    S3 behaviour). The moto HTTP server runs in this process, so one lock covers it."""
    from moto.s3.responses import S3Response

    lock = threading.Lock()
    handle = S3Response._key_response

    def atomic(self: S3Response, request: Any, full_url: str) -> Any:
        with lock:
            return handle(self, request, full_url)

    monkeypatch.setattr(S3Response, "_key_response", atomic)
