"""The terminal rendering, through a real pseudo-terminal: rich progress bars and tables,
a crash that leaves the terminal usable (cursor restored), and a resume."""

from __future__ import annotations

import re

import pexpect

from tests.cli.conftest import BIN

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _spawn(args: list[str], env: dict[str, str]) -> tuple[str, int | None, int | None]:
    term_env = dict(env, TERM="xterm-256color")
    term_env.pop("NO_COLOR", None)
    child = pexpect.spawn(
        str(BIN / "eleanor-cloud"),
        args,
        env=term_env,
        encoding="utf-8",
        timeout=60,
        dimensions=(50, 220),
    )
    child.expect(pexpect.EOF)
    output = child.before
    child.close()
    return output, child.exitstatus, child.signalstatus


def test_demo_crash_and_resume_on_a_terminal(cli_env: dict[str, str]) -> None:
    args = ["demo", "--work-delay", "0.005", "--lease-ttl", "1"]

    crashed, status, signal = _spawn([*args, "--crash-at", "validate"], cli_env)

    assert status is None and signal == 9, crashed[-500:]
    assert "\x1b[" in crashed  # rich is drawing, not the plain renderer
    assert "━" in crashed  # progress bars
    assert "generate (attempt 1)" in crashed
    text = ANSI.sub("", crashed)
    assert "--crash-at validate: killing this process" in text
    # The display was stopped before the kill: the cursor is shown again.
    assert crashed.rfind("\x1b[?25h") > crashed.find("killing this process")

    resumed, status, signal = _spawn(args, cli_env)

    assert status == 0 and signal is None, resumed[-800:]
    text = ANSI.sub("", resumed)
    assert "stages already COMPLETE are skipped: generate" in text
    assert "validate (attempt 2)" in text
    assert "task demo: COMPLETE" in text
    assert "┏" in text and "┃ STAGE" in text  # the rich table
    for row in ("│ generate ", "│ validate ", "│ transform", "│ publish "):
        assert row in text


def test_status_on_a_terminal_and_plain_when_piped(cli_env: dict[str, str]) -> None:
    import subprocess

    assert (
        subprocess.run(
            [str(BIN / "eleanor-cloud"), "demo", "--work-delay", "0"],
            env=cli_env,
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )
    tty, status, _ = _spawn(["status", "demo"], cli_env)
    assert status == 0
    assert "┃ STAGE" in ANSI.sub("", tty)
    piped = subprocess.run(
        [str(BIN / "eleanor-cloud"), "status", "demo"],
        env=cli_env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert "\x1b[" not in piped.stdout and "┃" not in piped.stdout
    assert piped.stdout.splitlines()[1].split()[:2] == ["STAGE", "STATUS"]


def test_rich_output_escapes_stored_text(hostile: object, cli_env: dict[str, str]) -> None:
    # conftest's hostile task: its message, a result and the lease holder carry ESC,
    # BEL, CSI and rich markup. rich draws its own escapes (colours, borders); none of the stored
    # ones may reach the terminal, and the markup must print as it was written.
    for command in (["status", "evil"], ["history", "evil"]):
        output, status, _ = _spawn(command, cli_env)
        assert status == (1 if command[0] == "status" else 0), output  # ERROR: status 1
        assert "\x07" not in output and "\x9b" not in output, repr(output)
        assert "\x1b[31mRED" not in output and "\x1b]0;pwned" not in output, repr(output)
        text = ANSI.sub("", output)
        assert "┃ STAGE" in text  # rich drew the table
        for piece in ("\\x1b[31mRED\\x07", "\\x9b2J", "[bold]b[/bold]"):
            assert piece in text, (piece, text)
        if command[0] == "status":
            assert '"note":"\\u001b[31mRED' in text, text  # the result
            assert "holder evil\\x1b[31m\\x07\\x9bhost/1/x" in text, text


def test_workers_draw_a_bar_per_shard_and_ctrl_c_stops_them(cli_env: dict[str, str]) -> None:
    import io
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[2])
    env = dict(cli_env, PYTHONPATH=root, FAN_SHARDS="4", FAN_PER="400")
    args = ["run", "tests.cli.fanout_tasks:build", "--task-id", "t", "--workers", "2"]
    term_env = dict(env, TERM="xterm-256color", FAN_DELAY="0.01")
    term_env.pop("NO_COLOR", None)
    child = pexpect.spawn(
        str(BIN / "eleanor-cloud"),
        args,
        env=term_env,
        encoding="utf-8",
        timeout=60,
        dimensions=(50, 160),
    )
    seen = io.StringIO()
    child.logfile_read = seen
    child.expect(r"s0 \(attempt 1\)")  # a bar per running shard
    child.sendintr()  # Ctrl-C: the terminal signals the CLI and its workers
    child.expect(pexpect.EOF)
    child.close()
    stopped = seen.getvalue()

    assert child.exitstatus == 75, stopped[-2000:]
    assert "━" in stopped  # rich bars
    text = ANSI.sub("", stopped)
    assert "fan: 0/4 shards ended" in text
    assert "SIGINT received: the workers finish their batch, checkpoint and stop" in text
    assert "s0 suspended" in text
    assert "┃ SHARD" in text and "suspended: the next run resumes it" in text

    resumed, status, _ = _spawn(args, env)

    assert status == 0, resumed[-2000:]
    text = ANSI.sub("", resumed)
    assert "s0 COMPLETE" in text and "fan: 4/4 shards ended" in text
    assert "fan COMPLETE: joined 4 shards" in text
    assert "task t: COMPLETE" in text
