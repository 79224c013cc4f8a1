"""Text from the store reaches the terminal escaped: no control characters, no markup.

Whoever can write to the store writes stage messages, results and lease holders; the
CLI must not let them recolour or rewrite the terminal (ESC, CSI, BEL, ...). The rich
rendering of the same data is tested through a pseudo-terminal in test_terminal.py;
the hostile task is conftest's ``hostile`` fixture.
"""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

import eleanor_cloud as ec
from eleanor_cloud.cli.escaping import printable
from tests.cli.conftest import HOLDER, HOSTILE, SHOWN

UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain text", "plain text"),
        ("keeps\nnewlines\tand tabs", "keeps\nnewlines\tand tabs"),
        ("\x00\x1b\x7f\x80\x9b\x9f", "\\x00\\x1b\\x7f\\x80\\x9b\\x9f"),
        ("\xa0é✓", "\xa0é✓"),  # printable non-ASCII is left alone
        ("lone \ud800 surrogate", "lone \\ud800 surrogate"),
        (HOSTILE, SHOWN),
    ],
)
def test_printable(text: str, shown: str) -> None:
    assert printable(text) == shown


@given(st.text())
def test_printable_leaves_no_control_character_and_only_touches_them(text: str) -> None:
    shown = printable(text)
    assert not UNSAFE.search(shown)
    if not UNSAFE.search(text) and not any("\ud800" <= c <= "\udfff" for c in text):
        assert shown == text


def _assert_escaped(text: str) -> None:
    assert not UNSAFE.search(text.replace("\r\n", "\n")), repr(text)


@pytest.mark.parametrize("command", [["status", "evil"], ["history", "evil"]], ids=" ".join)
def test_plain_output_escapes_stored_text(hostile: ec.StateStore, invoke, command) -> None:
    result = invoke(*command)
    _assert_escaped(result.stdout)
    assert SHOWN in result.stdout  # markup stays literal: "[bold]b[/bold]"
    if command[0] == "status":
        assert "holder evil\\x1b[31m\\x07\\x9bhost/1/x" in result.stdout


def test_result_is_shown_escaped(hostile: ec.StateStore, invoke) -> None:
    out = invoke("status", "evil").stdout
    _assert_escaped(out)
    assert '{"note":"\\u001b[31mRED\\u0007' in out  # the result cell, compact JSON


def test_errors_on_stderr_are_escaped(hostile: ec.StateStore, invoke) -> None:
    # delete warns about the live lease, quoting its holder; --break asks, quoting it.
    kept = invoke("delete", "evil", input="n\n")
    _assert_escaped(kept.stderr)
    assert "held by evil\\x1b[31m" in kept.stderr
    broke = invoke("lease", "evil", "--break", input="n\n")
    _assert_escaped(broke.stderr)


def test_json_keeps_the_data_and_escapes_c1(hostile: ec.StateStore, invoke) -> None:
    stdout = invoke("history", "evil", "--json").stdout
    _assert_escaped(stdout)  # C0 by json itself, DEL/C1 by the CLI: \u009b
    assert "\\u009b" in stdout
    assert json.loads(stdout)["entries"][0]["message"] == HOSTILE  # the same characters
    lease = json.loads(invoke("lease", "evil", "--json").stdout)
    assert lease["lease"]["holder"] == HOLDER
