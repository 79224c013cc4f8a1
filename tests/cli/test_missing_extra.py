"""``eleanor-cloud`` without its ``cli`` extra: an install hint and exit 2, no traceback.

Real processes in which click (or rich) cannot be imported: a ``sitecustomize`` on
PYTHONPATH blocks the module before the console script starts, as if the package had
been installed without ``[cli]``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

import eleanor_cloud as ec
from eleanor_cloud.models import StageStatus as S
from tests.cli.conftest import BIN, seed_task

HINT = "pip install 'eleanor-cloud[cli]'"


def _blocking(tmp_path: Path, module: str, env: dict[str, str]) -> dict[str, str]:
    """``env`` in which importing ``module`` fails as it does when it is not installed."""
    site = tmp_path / f"without-{module}"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        f"import sys\nsys.modules[{module!r}] = None  # import raises ModuleNotFoundError\n"
    )
    blocked = dict(env)
    blocked["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    return blocked


@pytest.mark.parametrize("args", [["--help"], ["status", "x"], []], ids=" ".join)
def test_without_click_the_console_script_says_what_to_install(
    tmp_path: Path, cli_env: dict[str, str], args: list[str]
) -> None:
    env = _blocking(tmp_path, "click", cli_env)
    probe = subprocess.run(
        [sys.executable, "-c", "import click"], env=env, capture_output=True, check=False
    )
    assert probe.returncode == 1 and b"ModuleNotFoundError" in probe.stderr  # blocked

    for command in ([str(BIN / "eleanor-cloud")], [sys.executable, "-m", "eleanor_cloud.cli"]):
        out = subprocess.run(
            [*command, *args], env=env, capture_output=True, text=True, check=False, timeout=60
        )
        assert out.returncode == 2, out.stderr
        assert HINT in out.stderr and "'click'" in out.stderr
        assert "Traceback" not in out.stderr and out.stderr.count("\n") == 1
        assert out.stdout == ""


def test_an_unrelated_missing_module_is_not_blamed_on_the_extra(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    # A broken install of something else must show its real error, not a wrong hint.
    env = _blocking(tmp_path, "eleanor_cloud.cli.read", cli_env)
    out = subprocess.run(
        [str(BIN / "eleanor-cloud"), "--help"], env=env, capture_output=True, text=True, check=False
    )
    assert out.returncode == 1
    assert "ModuleNotFoundError" in out.stderr and HINT not in out.stderr


def test_without_rich_a_terminal_says_what_to_install(
    tmp_path: Path, cli_env: dict[str, str], store: ec.StateStore
) -> None:
    seed_task(store, "t", [("only", S.COMPLETE, 1)])
    env = _blocking(tmp_path, "rich", cli_env)
    env["TERM"] = "xterm-256color"

    # Piped output never needs rich: it works.
    piped = subprocess.run(
        [str(BIN / "eleanor-cloud"), "status", "t"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert piped.returncode == 0 and piped.stdout.startswith("task t: COMPLETE")

    # A terminal does (tables, progress bars): hint and exit 2.
    child = pexpect.spawn(
        str(BIN / "eleanor-cloud"), ["status", "t"], env=env, encoding="utf-8", timeout=60
    )
    child.expect(pexpect.EOF)
    output = child.before
    child.close()
    assert child.exitstatus == 2, output
    assert HINT in output and "'rich'" in output and "Traceback" not in output
