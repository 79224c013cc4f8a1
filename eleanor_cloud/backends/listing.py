"""Shared listing helper: S3-style delimiter roll-up over a sorted key sequence."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

__all__ = ["roll_up"]


def roll_up(sorted_keys: Iterable[str], prefix: str, delimiter: str | None) -> Iterator[str]:
    """Yield keys, collapsing those with ``delimiter`` after ``prefix`` into one entry."""
    last: str | None = None
    for key in sorted_keys:
        if delimiter:
            cut = key.find(delimiter, len(prefix))
            if cut != -1:
                key = key[: cut + len(delimiter)]
        if key != last:
            last = key
            yield key
