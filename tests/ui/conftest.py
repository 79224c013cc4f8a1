"""Fixtures for the dashboard tests: seeded stores, a TestClient, a real uvicorn server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import eleanor_cloud as ec
from eleanor_cloud.testing.conformance.wrappers import CountingBackend
from tests.ui.seed import seed

pytest.importorskip("starlette")


@pytest.fixture(scope="module")
def seeded() -> ec.StateStore:
    """A memory store holding the seeded tasks (one per test module: reading never
    changes it)."""
    store = ec.open_store("memory://")
    seed(store)
    return store


@pytest.fixture
def counted(seeded: ec.StateStore) -> tuple[ec.StateStore, CountingBackend]:
    """The seeded store seen through a backend that counts every request."""
    counting = CountingBackend(seeded.backend)
    return ec.StateStore(counting, seeded.prefix), counting


@pytest.fixture
def client(counted: tuple[ec.StateStore, CountingBackend]) -> Iterator[Any]:
    from starlette.testclient import TestClient

    from eleanor_cloud.ui.app import create_app

    with TestClient(create_app(counted[0]), base_url="http://127.0.0.1") as running:
        yield running


class Served:
    """A uvicorn server in a thread, on a free loopback port."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        from tests.support.servers import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="ui-server", daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 20
        while True:  # readiness: the health route answers over HTTP
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the dashboard did not start on {self.url}")
            time.sleep(0.02)  # between polls only; readiness is the HTTP answer

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
