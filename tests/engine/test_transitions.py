"""The pure core: every status change, unit- and property-tested without a store.

Hypothesis drives random sequences of transitions (start, fail, complete, interrupt,
strand, cancel, redrive, reset) through the same functions the engine calls, and checks
the invariants the engine and the retry accounting rest on.
"""

from __future__ import annotations

import ast
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from eleanor_cloud.engine import transitions as tr
from eleanor_cloud.engine.backoff import Backoff
from eleanor_cloud.errors import InvalidState
from eleanor_cloud.models import (
    BaseStageState,
    RetryPolicy,
    SimpleRecordsResult,
    StageStatus,
)

S = StageStatus
T0 = datetime(2026, 1, 1, tzinfo=UTC)


class St(BaseStageState[SimpleRecordsResult]):
    rows: int = 0


def fresh(name: str = "a") -> St:
    return St(task_id="t", stage_name=name, status=S.CREATED)


def failed_attempt(state: St, policy: RetryPolicy, budget: int, others: list[St]) -> St:
    running = tr.start(state)
    lost = tr.entry(running.attempts, state.status, T0, S.RETRY, T0, "boom")
    return tr.fail(running, lost, policy, budget, others)


def completed_attempt(state: St) -> St:
    running = tr.start(state)
    work = running.model_copy(update={"rows": 7})
    done = tr.entry(running.attempts, state.status, T0, S.COMPLETE, T0, "completed")
    return tr.complete(St, work, running, SimpleRecordsResult(total_count=7), done)


# -- the module is pure ------------------------------------------------------------------


def test_transitions_import_no_store_backend_engine_or_thread() -> None:
    """The pure core's own imports: models, clock, errors and pydantic, nothing else."""
    source = Path(tr.__file__).read_text(encoding="utf-8")
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    allowed = {
        "__future__",
        "collections.abc",
        "datetime",
        "typing",
        "pydantic",
        "pydantic_core",
        "eleanor_cloud.clock",
        "eleanor_cloud.errors",
        "eleanor_cloud.models",
    }
    assert imported <= allowed, f"transitions.py imports {sorted(imported - allowed)}"


# -- single transitions ------------------------------------------------------------------


def test_start_counts_the_attempt_and_copies() -> None:
    before = fresh()
    running = tr.start(before)
    assert (running.status, running.attempts) == (S.RUNNING, 1)
    assert before.status is S.CREATED and before.attempts == 0


def test_fail_under_none_is_final_and_under_stage_retries_until_the_budget() -> None:
    assert failed_attempt(fresh(), RetryPolicy.NONE, 5, []).status is S.ERROR
    state = fresh()
    statuses = []
    for _ in range(3):
        state = failed_attempt(state, RetryPolicy.STAGE, 3, [])
        statuses.append(state.status)
    assert statuses == [S.RETRY, S.RETRY, S.ERROR]
    assert [h.end_status for h in state.history] == statuses


def test_global_budget_counts_other_stages() -> None:
    done = completed_attempt(fresh("a"))
    assert failed_attempt(fresh("b"), RetryPolicy.GLOBAL, 2, [done]).status is S.ERROR
    assert failed_attempt(fresh("b"), RetryPolicy.GLOBAL, 3, [done]).status is S.RETRY


def test_complete_keeps_stage_fields_and_engine_fields() -> None:
    done = completed_attempt(fresh())
    assert (done.status, done.attempts, done.rows) == (S.COMPLETE, 1, 7)
    assert done.result == SimpleRecordsResult(total_count=7)
    assert [h.message for h in done.history] == ["completed"]


def test_complete_refuses_a_state_that_would_not_read_back() -> None:
    running = tr.start(fresh())
    work = running.model_copy(update={"rows": "not a number"})
    done = tr.entry(1, S.CREATED, T0, S.COMPLETE, T0, "completed")
    with pytest.raises(InvalidState, match="'rows'"):
        tr.complete(St, work, running, None, done)


def test_check_result_validates_against_the_result_type() -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(SimpleRecordsResult | None)
    running = tr.start(fresh())
    assert tr.check_result(adapter, St, "a", None, running) is None
    with pytest.raises(InvalidState, match="returned int"):
        tr.check_result(adapter, St, "a", 3, running)


def test_cancel_redrive_reset_and_strand() -> None:
    assert tr.cancel(None, fresh()).status is S.CANCELED  # type: ignore[union-attr]
    assert tr.cancel(completed_attempt(fresh()), fresh()) is None
    error = failed_attempt(fresh(), RetryPolicy.NONE, 1, [])
    assert tr.redrive(error).status is S.RETRY  # type: ignore[union-attr]
    assert tr.redrive(fresh()) is None
    back = tr.reset(completed_attempt(fresh()), now="2026-01-01T00:00:00Z", began=None)
    assert back is not None and (back.status, back.result) == (S.CREATED, None)
    assert tr.reset(fresh(), now="2026-01-01T00:00:00Z", began=None) is None
    assert tr.strand(fresh()).status is S.ERROR


def test_a_lost_attempt_is_recorded_with_its_duration() -> None:
    running = tr.start(fresh())
    state = tr.interrupted(
        running,
        began="2026-01-01T00:00:00.000000Z",
        now="2026-01-01T00:00:30.000000Z",
        detail="host died",
        policy=RetryPolicy.STAGE,
        max_attempts=3,
        others=[],
    )
    (entry,) = state.history
    assert state.status is S.RETRY and entry.run_time_seconds == 30.0
    assert entry.message == "interrupted: host died"


def test_a_clock_that_steps_back_gives_zero_seconds() -> None:
    entry = tr.entry(1, S.CREATED, T0, S.COMPLETE, T0 - timedelta(seconds=5), "completed")
    assert entry.run_time_seconds == 0.0


# -- properties --------------------------------------------------------------------------

OPS = st.lists(
    st.sampled_from(["fail", "complete", "interrupt", "redrive", "reset", "cancel"]),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(
    ops=OPS,
    policy=st.sampled_from(list(RetryPolicy)),
    budget=st.integers(min_value=1, max_value=5),
)
def test_any_sequence_keeps_the_invariants(
    ops: list[str], policy: RetryPolicy, budget: int
) -> None:
    """Whatever happens to a stage: attempts == len(history) after every finished
    attempt, a run never exceeds its budget, terminal statuses end a run, and a stage
    only runs when the accounting allows it."""
    state = fresh()
    for op in ops:
        may = tr.may_attempt(policy, budget, state, [state])
        attempted = op in ("fail", "complete", "interrupt")
        if attempted:
            if state.status not in (S.CREATED, S.RETRY) or not may:
                continue  # the engine would not start it (strands it instead)
            if op == "fail":
                state = failed_attempt(state, policy, budget, [])
            elif op == "complete":
                state = completed_attempt(state)
            else:
                state = tr.interrupted(
                    tr.start(state),
                    began=None,
                    now="2026-01-01T00:00:00.000000Z",
                    detail="x",
                    policy=policy,
                    max_attempts=budget,
                    others=[],
                )
        elif op == "redrive":
            state = tr.redrive(state) or state
        elif op == "reset":
            state = tr.reset(state, now="2026-01-01T00:00:00.000000Z", began=None) or state
        else:
            state = tr.cancel(state, fresh()) or state
        assert state.attempts == len(state.history)
        assert tr.current_run(state) <= tr.attempts_allowed(policy, budget)
        if state.status is S.RETRY:
            assert tr.may_attempt(policy, budget, state, [state]), "RETRY must be runnable"
        if attempted and state.history:  # an attempt's entry records where it ended
            assert state.history[-1].end_status is state.status


@settings(max_examples=300, deadline=None)
@given(
    retry=st.integers(min_value=-5, max_value=10**12),
    initial=st.floats(min_value=0, max_value=1e6),
    multiplier=st.floats(min_value=1, max_value=1e300),
    max_delay=st.floats(min_value=0, max_value=1e308),
    jitter=st.floats(min_value=0, max_value=1),
    rnd=st.floats(min_value=0, max_value=0.999999),
)
def test_backoff_is_defined_for_any_attempt_number(
    retry: int, initial: float, multiplier: float, max_delay: float, jitter: float, rnd: float
) -> None:
    delay = Backoff(initial, multiplier, max_delay, jitter, random=lambda: rnd).delay(retry)
    assert 0.0 <= delay <= max_delay
    if retry < 1:
        assert delay == 0.0


def test_backoff_grows_then_caps() -> None:
    backoff = Backoff(initial=1, multiplier=2, max_delay=60, jitter=0, random=lambda: 0.0)
    assert [backoff.delay(n) for n in (1, 2, 3, 7, 1025, 10**9)] == [1, 2, 4, 60, 60, 60]


# -- bounded history -------------------------------------------------------------------


def _drive(ops: list[str], policy: RetryPolicy, budget: int) -> list[tuple[Any, ...]]:
    """Apply ``ops`` like the engine would; the trace of (status, run, attempts) after each."""
    state, trace = fresh(), []
    for op in ops:
        if op in ("fail", "complete"):
            if state.status not in (S.CREATED, S.RETRY) or not tr.may_attempt(
                policy, budget, state, [state]
            ):
                continue
            state = (
                failed_attempt(state, policy, budget, [])
                if op == "fail"
                else completed_attempt(state)
            )
        elif op == "redrive":
            state = tr.redrive(state) or state
        else:
            state = tr.reset(state, now="2026-01-01T00:00:00.000000Z", began=None) or state
        assert len(state.history) <= tr.HISTORY_LIMIT
        trace.append((state.status, tr.current_run(state), state.attempts))
    return trace


@settings(max_examples=200, deadline=None)
@given(
    ops=st.lists(
        st.sampled_from(["fail", "fail", "fail", "complete", "redrive", "reset"]), max_size=120
    ),
    policy=st.sampled_from([RetryPolicy.STAGE, RetryPolicy.GLOBAL]),
    budget=st.integers(min_value=1, max_value=30),
    limit=st.integers(min_value=3, max_value=8),
)
def test_compacting_the_history_never_changes_a_budget(
    ops: list[str], policy: RetryPolicy, budget: int, limit: int
) -> None:
    """The same transitions with a tiny history bound and with none at all: every
    status, every current-run count and every attempt number agree."""
    from unittest import mock

    with mock.patch.object(tr, "HISTORY_LIMIT", 10**9):
        unbounded = _drive(ops, policy, budget)
    with mock.patch.object(tr, "HISTORY_LIMIT", limit):
        bounded = _drive(ops, policy, budget)
    assert bounded == unbounded


def test_messages_are_capped_and_say_so() -> None:
    entry = tr.entry(1, S.CREATED, T0, S.RETRY, T0, "x" * 100_000)
    assert len(entry.message) <= tr.MESSAGE_LIMIT
    assert entry.message.endswith("more characters not kept]")
    assert tr.cap_message("short") == "short"


def test_a_compacted_history_keeps_first_summary_and_latest() -> None:
    state = fresh()
    for _ in range(200):
        state = failed_attempt(state, RetryPolicy.STAGE, 10**6, [])
    history = state.history
    assert len(history) == tr.HISTORY_LIMIT and state.attempts == 200
    assert history[0].attempt == 1 and history[-1].attempt == 200
    assert history[1].message == "compacted: attempts 2-152 are not kept one by one"
    assert [h.attempt for h in history[2:]] == list(range(153, 201))
    assert tr.current_run(state) == 200
