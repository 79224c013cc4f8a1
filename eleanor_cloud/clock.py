"""Time: always timezone-aware UTC, and injectable so tests control it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

__all__ = ["Clock", "format_ts", "parse_ts", "utc_now"]

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The current time as an aware UTC datetime (the default clock)."""
    return datetime.now(UTC)


def format_ts(moment: datetime) -> str:
    """ISO-8601 in UTC with a ``Z`` suffix; naive datetimes are refused."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: eleanor_cloud timestamps are always UTC-aware")
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_ts(text: str) -> datetime:
    """Parse a timestamp written by :func:`format_ts` (or any aware ISO-8601)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no timezone")
    return moment.astimezone(UTC)
