"""Shared listing helper: S3-style delimiter roll-up over a sorted key sequence."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

__all__ = ["roll_up"]


def roll_up(sorted_keys: Iterable[str], prefix: str, delimiter: str | None) -> Iterator[str]:
    """Yield keys, collapsing those with ``delimiter`` after ``prefix`` into one entry."""
    last: str | None = None
    for key in sorted_keys:
        entry = key
        if delimiter:
            cut = key.find(delimiter, len(prefix))
            if cut != -1:
                entry = key[: cut + len(delimiter)]
        if entry != last:
            last = entry
            yield entry
