"""Simulated time for Lambda tests: one clock for the engine, the handler and the context.

Only what the test lets move it moves it (the engine's ``sleep``, a stage's simulated
work, the state machine's Wait states), so every duration asserted is exact and
nothing sleeps.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class SimTime:
    """The test's whole notion of time; only ``sleep`` moves it."""

    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=UTC)

    def clock(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def seconds_since(self, then: datetime) -> float:
        return (self.now - then).total_seconds()


class SimContext:
    """A Lambda context whose remaining time runs down on the simulated clock."""

    aws_request_id = "sim"

    def __init__(self, sim: SimTime, seconds: float) -> None:
        self._sim = sim
        self._ends = sim.now + timedelta(seconds=seconds)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._ends - self._sim.now).total_seconds() * 1000))
