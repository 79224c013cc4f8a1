"""Every seed model checked field by field against the EleanorAI task model spec."""

from __future__ import annotations

import typing
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticUndefined

import eleanor_cloud as ec
from eleanor_cloud.models import (
    ACTIVE_STATES,
    CANCELABLE_STATES,
    INACTIVE_STATES,
    STAGE_NAME_MAX_LENGTH,
    STAGE_RESULT,
    BaseStageState,
    RecordStatus,
    RetryPolicy,
    SimpleRecordsResult,
    StageStateHistoryEntry,
    StageStatus,
)

S = StageStatus


def _constraint(model: type[BaseModel], field: str, name: str) -> Any:
    for meta in model.model_fields[field].metadata:
        if hasattr(meta, name):
            return getattr(meta, name)
    return None


def test_stage_status_values() -> None:
    assert {m.name: m.value for m in StageStatus} == {
        "UNBOUND": "UNBOUND",
        "CREATED": "CREATED",
        "RUNNING": "RUNNING",
        "RETRY": "RETRY",
        "ERROR": "ERROR",
        "COMPLETE": "COMPLETE",
        "CANCELED": "CANCELED",
    }


def test_retry_policy_values() -> None:
    assert {m.name: m.value for m in RetryPolicy} == {
        "NONE": "NONE",
        "STAGE": "STAGE",
        "GLOBAL": "GLOBAL",
    }


def test_record_status_values() -> None:
    assert {m.name: m.value for m in RecordStatus} == {
        "SUCCESS": "success",
        "ERROR": "error",
        "UNPROCESSED": "unprocessed",
    }


def test_state_sets_and_constants() -> None:
    assert {S.CREATED, S.RUNNING, S.RETRY} == ACTIVE_STATES
    assert {S.UNBOUND, S.CREATED, S.RUNNING, S.RETRY} == CANCELABLE_STATES
    assert {S.COMPLETE, S.CANCELED, S.ERROR} == INACTIVE_STATES
    assert STAGE_NAME_MAX_LENGTH == 150
    assert isinstance(STAGE_RESULT, typing.TypeVar)
    assert STAGE_RESULT.__bound__ is BaseModel


@pytest.mark.parametrize(
    ("field", "title", "description"),
    [
        ("attempt", "Attempt", "Run attempt number corresponding to this history entry"),
        ("begin_status", "Begin Status", "Status of the stage prior to the run"),
        ("begin_ts", "Start Timestamp", "Run start timestamp"),
        ("end_status", "End Status", "Status of the stage after the run"),
        ("end_ts", "End Timestamp", "Run end timestamp"),
        ("message", "Message", "Status message"),
        ("run_time_seconds", "Run Time", "Stage run time in seconds"),
    ],
)
def test_history_entry_fields(field: str, title: str, description: str) -> None:
    info = StageStateHistoryEntry.model_fields[field]
    assert info.title == title
    assert info.description == description
    assert info.is_required()


def test_history_entry_types_and_constraints() -> None:
    fields = StageStateHistoryEntry.model_fields
    assert list(fields) == [
        "attempt",
        "begin_status",
        "begin_ts",
        "end_status",
        "end_ts",
        "message",
        "run_time_seconds",
    ]
    assert fields["attempt"].annotation is int
    assert _constraint(StageStateHistoryEntry, "attempt", "ge") == 0
    assert fields["begin_status"].annotation is StageStatus
    assert fields["run_time_seconds"].annotation is float
    ok = dict(
        attempt=0,
        begin_status="CREATED",
        begin_ts="a",
        end_status="COMPLETE",
        end_ts="b",
        message="m",
        run_time_seconds=0.5,
    )
    assert StageStateHistoryEntry(**ok).begin_status is S.CREATED
    with pytest.raises(ValidationError, match="attempt"):
        StageStateHistoryEntry(**{**ok, "attempt": -1})
    with pytest.raises(ValidationError, match="message"):
        StageStateHistoryEntry(**{k: v for k, v in ok.items() if k != "message"})


@pytest.mark.parametrize(
    ("field", "title", "description"),
    [
        ("fail_count", "Fail Count", "Number of failed records"),
        ("message", "Message", "Result message"),
        ("success_count", "Success Count", "Number of successful records"),
        ("total_count", "Total Count", "Total number of records"),
        ("unprocessed_count", "Unprocessed Count", "Number of unprocessed records"),
    ],
)
def test_simple_records_result_fields(field: str, title: str, description: str) -> None:
    info = SimpleRecordsResult.model_fields[field]
    assert info.title == title
    assert info.description == description
    if field == "message":
        assert info.default is None
    else:
        assert info.default == 0
        assert _constraint(SimpleRecordsResult, field, "ge") == 0
        with pytest.raises(ValidationError, match=field):
            SimpleRecordsResult(**{field: -1})


def test_base_stage_state_fields() -> None:
    fields = BaseStageState.model_fields
    assert set(fields) == {"attempts", "history", "result", "stage_name", "status", "task_id"}
    expected = {
        "attempts": (
            0,
            "Run attempts",
            (
                "Number of times the stage has been run, value of 0 "
                "indicates it has not been run yet. Primarily used to track retries."
            ),
        ),
        "history": ([], "History", "Stage state history"),
        "result": (
            None,
            "Result",
            (
                "Contains the stage execution result. The intended use "
                "case is to store the output of the final stage such that external "
                "systems can inspect the final stage to determine the overall result of "
                "the task. A value of None indicates that the stage has not been "
                "completed successfully"
            ),
        ),
        "stage_name": (
            "",
            "Stage Name",
            (
                "Unique stage name / identifier. This field will be "
                "used to generate the state metadata file/object and persisted during "
                "execution"
            ),
        ),
        "status": (
            S.UNBOUND,
            "Stage Status",
            (
                "Stage execution status, used by the task "
                "execution engine to determine whether this state needs to be executed "
                "or skipped"
            ),
        ),
        "task_id": ("", "Task ID", "Task ID"),
    }
    for name, (default, title, description) in expected.items():
        info = fields[name]
        assert info.default == default and info.default is not PydanticUndefined, name
        assert info.title == title, name
        assert info.description == description, name
    assert _constraint(BaseStageState, "attempts", "ge") == 0
    assert _constraint(BaseStageState, "stage_name", "max_length") == STAGE_NAME_MAX_LENGTH
    assert BaseStageState.model_config["extra"] == "forbid"
    assert BaseStageState.model_config["strict"] is False
    assert BaseStageState.model_config["arbitrary_types_allowed"] is False


def test_base_stage_state_validation() -> None:
    with pytest.raises(ValidationError, match="attempts"):
        BaseStageState(attempts=-1)
    with pytest.raises(ValidationError, match="stage_name"):
        BaseStageState(stage_name="x" * 151)
    BaseStageState(stage_name="x" * 150)
    with pytest.raises(ValidationError, match="unknown"):
        BaseStageState(unknown=1)  # type: ignore[call-arg]
    assert BaseStageState(status="RETRY", attempts="2").attempts == 2  # strict=False


def test_history_default_is_not_shared() -> None:
    a, b = BaseStageState(), BaseStageState()
    a.history.append(
        StageStateHistoryEntry(
            attempt=1,
            begin_status=S.CREATED,
            begin_ts="t0",
            end_status=S.COMPLETE,
            end_ts="t1",
            message="ok",
            run_time_seconds=1.0,
        )
    )
    assert b.history == []
    assert BaseStageState().history == []


class Shared(BaseStageState[SimpleRecordsResult]):
    source: str = ""
    rows: int = 0


def test_user_subclass_round_trips_with_typed_result() -> None:
    state = Shared(
        task_id="t",
        stage_name="load",
        status=S.COMPLETE,
        attempts=1,
        source="s3://x",
        rows=5,
        result=SimpleRecordsResult(total_count=5, success_count=4, fail_count=1, message="done"),
    )
    text = state.model_dump_json()
    back = Shared.model_validate_json(text)
    assert back == state
    assert isinstance(back.result, SimpleRecordsResult)
    assert back.result.fail_count == 1
    with pytest.raises(ValidationError, match="result"):
        Shared.model_validate({"result": {"total_count": -3}})


def test_public_names_are_exported() -> None:
    for name in (
        "StageStatus",
        "RetryPolicy",
        "RecordStatus",
        "StageStateHistoryEntry",
        "SimpleRecordsResult",
        "BaseStageState",
        "ACTIVE_STATES",
        "CANCELABLE_STATES",
        "INACTIVE_STATES",
        "STAGE_NAME_MAX_LENGTH",
        "STAGE_RESULT",
        "open_store",
        "StateStore",
        "EleanorError",
    ):
        assert name in ec.__all__
        assert getattr(ec, name) is not None
    assert len(set(ec.__all__)) == len(ec.__all__)
