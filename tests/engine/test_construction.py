"""Bad input is refused at construction, before any write; bind is one write."""

from __future__ import annotations

from typing import Any

import pytest

from eleanor_cloud.engine import Backoff, BaseStage, TaskEngine
from eleanor_cloud.errors import InvalidKey, InvalidState, TaskBindingError
from eleanor_cloud.models import BaseStageState, RetryPolicy, StageStatus
from eleanor_cloud.store import StateStore
from tests.engine.conftest import CountingBackend
from tests.engine.taskdefs import DemoState, FnStage, Out


def ok(state: DemoState, ctx: Any) -> Out:
    return Out(value=1)


def stages(*names: str) -> list[FnStage]:
    return [FnStage(n, ok) for n in names]


class NotAState:
    pass


class NeedsValue(BaseStageState[Out]):
    required: int


class Unnamed(BaseStage[DemoState]):
    pass


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"stages": []}, "must not be empty"),
        ({"stages": stages("a", "b", "a")}, "duplicate stage name 'a'"),
        ({"stages": [object()]}, "must be a BaseStage"),
        ({"stages": [Unnamed()]}, "has no name"),
        ({"stages": [FnStage("ok", ok, expected_duration=-1)]}, "expected_duration"),
        ({"state_class": NotAState}, "subclass of BaseStageState"),
        ({"state_class": dict}, "subclass of BaseStageState"),
        ({"state_class": NeedsValue}, "'required'"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": True}, "max_attempts"),
        ({"retry_policy": "STAGE"}, "retry_policy"),
        ({"retry_policy": RetryPolicy.GLOBAL, "max_attempts": 2}, "below the number of stages"),
        ({"lease_ttl": 0}, "lease_ttl"),
        ({"wait_for_lease": -1}, "wait_for_lease"),
        ({"clock_skew_tolerance": -0.5}, "clock_skew_tolerance"),
        ({"renew_interval": 0}, "renew_interval"),
        ({"cancel_check_interval": -1}, "cancel_check_interval"),
        ({"backoff": 3}, "backoff"),
        ({"metadata": {"k": 1}}, "metadata"),
        ({"store": object()}, "StateStore"),
    ],
)
def test_bad_input_is_refused_before_any_write(
    backend: CountingBackend, store: StateStore, kwargs: dict[str, Any], fragment: str
) -> None:
    args: dict[str, Any] = {
        "task_id": "t",
        "stages": stages("a", "b", "c"),
        "state_class": DemoState,
        "store": store,
    }
    args.update(kwargs)
    with pytest.raises(InvalidState, match=fragment.replace("(", r"\(")):
        TaskEngine(
            args.pop("task_id"),
            args.pop("stages"),
            args.pop("state_class"),
            args.pop("store"),
            **args,
        )
    assert backend.total == 0
    assert list(backend.inner.list("")) == []


@pytest.mark.parametrize("bad", ["../x", "_task", "a/b", ".hidden", "x" * 151])
def test_unsafe_stage_names_are_refused(
    backend: CountingBackend, store: StateStore, bad: str
) -> None:
    with pytest.raises(InvalidKey):
        TaskEngine("t", [FnStage(bad, ok)], DemoState, store)
    assert backend.total == 0


@pytest.mark.parametrize("bad", ["../x", "a/b", "", "_lease"])
def test_unsafe_task_ids_are_refused(backend: CountingBackend, store: StateStore, bad: str) -> None:
    with pytest.raises(InvalidKey):
        TaskEngine(bad, stages("a"), DemoState, store)
    assert backend.total == 0


def test_bad_backoff_values_are_refused() -> None:
    for kwargs in ({"initial": -1}, {"multiplier": 0.5}, {"max_delay": -1}, {"jitter": 2}):
        with pytest.raises(InvalidState, match=next(iter(kwargs))):
            Backoff(**kwargs)  # type: ignore[arg-type]


def test_bad_run_arguments_are_refused_before_any_write(
    backend: CountingBackend, store: StateStore
) -> None:
    from datetime import datetime

    engine = TaskEngine("t", stages("a"), DemoState, store)
    with pytest.raises(InvalidState, match="timezone-aware"):
        engine.run(deadline=datetime(2030, 1, 1))
    with pytest.raises(InvalidState, match="time_budget"):
        engine.run(time_budget=-1)
    with pytest.raises(InvalidState, match="no stage 'zzz'"):
        engine.rollback("zzz")
    assert backend.total == 0


def test_bind_is_two_writes_and_missing_stages_read_as_created(
    backend: CountingBackend, store: StateStore
) -> None:
    engine = TaskEngine("t", stages("a", "b"), DemoState, store, metadata={"owner": "me"})
    manifest = engine.bind()
    assert backend.calls == {"write": 2}  # the manifest, then the task's CREATED marker
    assert manifest.stages == ("a", "b")
    assert manifest.state_class == "tests.engine.taskdefs.DemoState"
    assert manifest.metadata == {"owner": "me"}
    assert store.load_manifest("t") == manifest
    summary = engine.status()
    assert [s.status for s in summary.stages] == [StageStatus.CREATED] * 2
    assert summary.status is StageStatus.CREATED
    assert not summary.done
    assert summary.next_stage == "a"


def test_rebinding_the_same_definition_is_accepted(store: StateStore) -> None:
    first = TaskEngine("t", stages("a", "b"), DemoState, store).bind()
    again = TaskEngine("t", stages("a", "b"), DemoState, store).bind()
    assert again == first


def test_binding_a_different_stage_list_names_both(store: StateStore) -> None:
    TaskEngine("t", stages("a", "b"), DemoState, store).bind()
    with pytest.raises(TaskBindingError) as info:
        TaskEngine("t", stages("a", "c"), DemoState, store).bind()
    assert "['a', 'b']" in str(info.value)
    assert "['a', 'c']" in str(info.value)


class OtherState(BaseStageState[Out]):
    pass


def test_binding_a_different_state_class_names_both(store: StateStore) -> None:
    TaskEngine("t", stages("a"), DemoState, store).bind()
    with pytest.raises(TaskBindingError) as info:
        TaskEngine("t", stages("a"), OtherState, store).run()
    assert "tests.engine.taskdefs.DemoState" in str(info.value)
    assert "OtherState" in str(info.value)


def test_unbound_status_reads_as_unbound_without_writing(
    backend: CountingBackend, store: StateStore
) -> None:
    summary = TaskEngine("t", stages("a"), DemoState, store).status()
    assert summary.status is StageStatus.UNBOUND
    assert backend.calls["write"] == 0


def test_top_level_lazy_exports_are_the_engine_classes() -> None:
    import eleanor_cloud
    from eleanor_cloud import engine

    assert eleanor_cloud.TaskEngine is engine.TaskEngine
    assert eleanor_cloud.BaseStage is engine.BaseStage
    assert eleanor_cloud.StageContext is engine.StageContext
    assert eleanor_cloud.TaskSummary is engine.TaskSummary


def test_engine_imports_no_cloud_sdk() -> None:
    import subprocess
    import sys

    code = (
        "import sys, eleanor_cloud.engine; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('boto3', 'botocore', 'fsspec', 's3fs')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
