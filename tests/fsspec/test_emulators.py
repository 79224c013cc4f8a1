"""The emulator helpers fail loudly and clean up after themselves."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.support import emulators


def _accepts(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "", parts.port or 0), timeout=1):
            return True
    except OSError:
        return False


def test_an_emulator_that_exits_early_is_reported_with_its_log() -> None:
    argv = [sys.executable, "-c", "import sys; print('port already taken'); sys.exit(3)"]
    with (
        pytest.raises(emulators.EmulatorError) as info,
        emulators._process("dummy", argv, ready=lambda: False),
    ):
        pytest.fail("a server that never answered was reported as started")
    assert "exited with status 3" in str(info.value)
    assert "port already taken" in str(info.value)


def test_missing_azurite_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(emulators, "REPO_ROOT", tmp_path)
    with pytest.raises(emulators.EmulatorError, match="npm ci"):
        emulators.azurite_binary()


def test_fake_gcs_server_is_stopped_on_exit() -> None:
    with emulators.fake_gcs_server() as url:
        assert _accepts(url)
    assert not _accepts(url)
