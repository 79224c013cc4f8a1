"""``eleanor-cloud ui`` as a user runs it: a real process serving a local store, its
help, and the install hint when the ``ui`` extra is missing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

import eleanor_cloud as ec
from eleanor_cloud.cli.app import cli
from tests.support.servers import free_port
from tests.ui.seed import ERROR_ID, EXPECTED, seed

BIN = Path(sys.executable).parent
HINT = "pip install 'eleanor-cloud[ui]'"


def _env(tmp_path: Path, block: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    paths = [root]
    if block is not None:
        site = tmp_path / f"without-{block}"
        site.mkdir()
        (site / "sitecustomize.py").write_text(f"import sys\nsys.modules[{block!r}] = None\n")
        paths.insert(0, str(site))
    env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def test_help_names_the_options() -> None:
    out = CliRunner().invoke(cli, ["ui", "--help"])
    assert out.exit_code == 0
    for option in ("--host", "--port", "--refresh", "--page-size", "--allow-host"):
        assert option in out.output
    assert "read-only" in out.output


@pytest.mark.parametrize("module", ["starlette", "uvicorn"])
def test_without_the_extra_it_says_what_to_install(tmp_path: Path, module: str) -> None:
    out = subprocess.run(
        [str(BIN / "eleanor-cloud"), "--store", str(tmp_path / "s"), "ui"],
        env=_env(tmp_path, module),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert out.returncode == 2, out.stderr
    assert HINT in out.stderr and repr(module) in out.stderr
    assert "Traceback" not in out.stderr and out.stderr.count("\n") == 1


def test_importing_the_package_and_the_cli_loads_no_web_stack(tmp_path: Path) -> None:
    code = (
        "import sys, eleanor_cloud, eleanor_cloud.cli.app\n"
        "bad = [m for m in ('starlette', 'uvicorn') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], env=_env(tmp_path), check=True, timeout=60)


def test_the_command_serves_the_store_on_loopback(tmp_path: Path) -> None:
    seed(ec.open_store(tmp_path / "store"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [str(BIN / "eleanor-cloud"), "--store", str(tmp_path / "store"), "ui", "--port", str(port)],
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:  # readiness: the health route answers
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the dashboard did not start"
            time.sleep(0.05)  # between polls only
        page = httpx.get(url + "/", params={"status": "ERROR"})
        assert page.status_code == 200 and f">{ERROR_ID}</a>" in page.text
        assert httpx.get(f"{url}/tasks/{ERROR_ID}").status_code == 200
        assert httpx.post(url + "/").status_code == 405
        assert httpx.get(url + "/", headers={"host": "rebound.example"}).status_code == 421
        assert len(EXPECTED) > 1
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert f"serving {(tmp_path / 'store').resolve().as_uri()} at {url}/" in err
    assert "Traceback" not in err


def test_a_port_in_use_is_one_line_and_exit_1(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run(
            [str(BIN / "eleanor-cloud"), "--store", str(tmp_path / "s"), "ui", "--port", str(port)],
            env=_env(tmp_path),
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
    assert out.returncode == 1, out.stderr
    assert out.stderr.startswith(f"eleanor-cloud: error: cannot listen on 127.0.0.1:{port}: ")
    assert "in use" in out.stderr and out.stderr.count("\n") == 1
