"""The reliability campaign's fixtures: campaign size, summaries, atomic moto.

Every scenario runs in ``make test`` at a small but real size. ``make reliability``
sets ``ELEANOR_RELIABILITY=full`` for the full sizes (and ``-s`` to show summaries).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

FULL = os.environ.get("ELEANOR_RELIABILITY", "").lower() == "full"


def size(small: int, full: int) -> int:
    """The campaign size of a scenario: ``small`` in ``make test``, ``full`` otherwise."""
    return full if FULL else small


def campaign_seed() -> int:
    """A scenario's random seed: ``ELEANOR_RELIABILITY_SEED`` to replay a logged one,
    else a fresh one (print it in the summary line)."""
    import random

    given = os.environ.get("ELEANOR_RELIABILITY_SEED")
    return int(given) if given else random.randrange(1 << 30)


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


@pytest.fixture(params=["local", "s3"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[dict[str, Any], int]:
    """The store the processes share, and how many runs to make on it: the test
    module's ``RUNS`` on a local directory, its ``S3_RUNS`` on the moto HTTP server."""
    if request.param == "local":
        return {"kind": "local", "root": str(tmp_path / "store")}, request.module.RUNS
    url, bucket = (request.getfixturevalue(n) for n in ("moto_server_url", "s3_bucket"))
    return {"kind": "s3", "bucket": bucket, "endpoint": url}, request.module.S3_RUNS
