"""Listing helpers the backends share: S3-style delimiter roll-up, in key order."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

__all__ = ["listing", "roll_up"]


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


def listing(keys: Iterable[str], prefix: str, delimiter: str | None) -> Iterator[str]:
    """The contract's ``list`` over object names found in any order.

    For stores whose own listing is unordered, or may return more than asked (a
    directory's whole subtree) or directory markers (names ending in ``/``): those are
    not objects, and a listing never shows them.
    """
    found = sorted(k for k in keys if k.startswith(prefix) and not k.endswith("/"))
    return roll_up(found, prefix, delimiter)
