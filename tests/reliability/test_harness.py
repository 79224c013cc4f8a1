"""The campaign's own invariant checks against what the engine really stores: a check
that misreads a valid state would report defects that are not there (or hide real
ones). In-process, memory store: no processes needed to pin the checker."""

from __future__ import annotations

from pathlib import Path

from eleanor_cloud.backends.memory import MemoryBackend
from eleanor_cloud.engine import Backoff, StageContext, TaskEngine
from eleanor_cloud.engine import transitions as tr
from eleanor_cloud.models import StageStatus
from eleanor_cloud.store import StateStore
from tests.reliability.harness import (
    PREFIX,
    EffectStage,
    RelResult,
    RelState,
    check_history,
    check_task,
)


class FlakyEffect(EffectStage):
    """Its side effect every attempt; fails all but attempt ``succeeds_at``."""

    def __init__(self, effects: Path, succeeds_at: int) -> None:
        super().__init__("s00", 0, effects)
        self.succeeds_at = succeeds_at

    def run(self, state: RelState, ctx: StageContext[RelState]) -> RelResult:
        result = super().run(state, ctx)
        if ctx.attempt < self.succeeds_at:
            raise RuntimeError(f"attempt {ctx.attempt} fails")
        return result


def test_a_compacted_history_passes_the_task_checks(tmp_path: Path) -> None:
    """Past 50 entries the engine keeps the first, a 'compacted:' summary and the
    latest 48: attempts == len(history) no longer holds, and must not be required."""
    store = StateStore(MemoryBackend("harness"), PREFIX)
    effects = tmp_path / "effects"
    summary = TaskEngine(
        "t",
        [FlakyEffect(effects, succeeds_at=70)],
        RelState,
        store,
        max_attempts=80,
        backoff=Backoff(initial=0, jitter=0),
    ).run()
    assert summary.status is StageStatus.COMPLETE
    state = store.load("t", "s00", RelState)
    assert len(state.history) == tr.HISTORY_LIMIT and state.attempts == 70
    assert state.history[1].message.startswith(tr.COMPACTED)
    assert check_history(state) == []
    check = check_task(store, "t", 1, effects)
    assert check.problems == [] and check.effects == 70


def test_the_history_check_still_sees_a_gap(tmp_path: Path) -> None:
    store = StateStore(MemoryBackend("harness"), PREFIX)
    TaskEngine(
        "t",
        [FlakyEffect(tmp_path / "effects", succeeds_at=60)],
        RelState,
        store,
        max_attempts=80,
        backoff=Backoff(initial=0, jitter=0),
    ).run()
    state = store.load("t", "s00", RelState)
    gap = state.model_copy(update={"history": [*state.history[:5], *state.history[6:]]})
    assert any("skips attempts" in p for p in check_history(gap))
    short = state.model_copy(update={"attempts": state.attempts + 1})
    assert any("latest entry" in p for p in check_history(short))
    plain = state.model_copy(update={"history": state.history[2:12], "attempts": 10})
    assert check_history(plain) != []  # uncompacted, yet numbered from 13
