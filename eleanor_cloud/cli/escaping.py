"""Make text from a store safe to print on a terminal.

Stage messages, results, lease holders and state classes are written by whoever can
write to the store. Printed raw, an ESC or CSI (``\\x1b[``, ``\\x9b``) would let them
recolour, move the cursor, rewrite earlier lines, retitle the window or worse, and a
BEL rings. :func:`printable` turns every C0 and C1 control character (and DEL) except
newline and tab into a visible ``\\xNN`` escape. Every human-readable line the CLI
prints passes through it once, in :mod:`eleanor_cloud.cli.output` and
:func:`eleanor_cloud.cli.common.echo_err`, so a new command cannot forget it.
"""

from __future__ import annotations

import re

__all__ = ["printable"]

# C0 minus \t (0x09) and \n (0x0a), DEL, C1. Lone surrogates too: JSON can carry them
# (``"\ud800"``) and writing one to a UTF-8 stdout raises UnicodeEncodeError, which
# would turn a display into a crash.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with control characters other than newline and tab shown as escapes."""
    return _UNSAFE.sub(_escape, text)
