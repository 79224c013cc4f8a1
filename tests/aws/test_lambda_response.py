"""The Lambda handler's response is bounded: results are pointed at, never embedded.

Step Functions refuses a task result over 256 KiB and Lambda a response over 6 MB.
The response used to carry every stage's result and the final result twice (a 297 KiB
result gave a 594 KiB response, a 30 MB one a 60 MB response). These tests run tasks
with such results through the real handler, and property-test the size bound over
stage counts, names and message sizes the engine cannot easily be made to produce.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

import eleanor_cloud as ec
from eleanor_cloud.aws import lambda_handler
from eleanor_cloud.aws.lambda_loop import VERSION_MAX_CHARS
from eleanor_cloud.aws.lambda_response import (
    MESSAGE_MAX_BYTES,
    RESPONSE_BUDGET_BYTES,
    STAGE_MESSAGE_MAX_BYTES,
    bounded_response,
    results_pointer,
)
from eleanor_cloud.engine import BaseStage, StageContext, StageSummary, TaskEngine, TaskSummary
from eleanor_cloud.models import StageStatus
from tests.aws import asl

# Step Functions' payload limit, which the budget must stay well under.
SFN_LIMIT = 256 * 1024


class Blob(BaseModel):
    data: str = ""


class BlobState(ec.BaseStageState[Blob]):
    pass


class Produce(BaseStage[BlobState]):
    """Returns a result of ``size`` characters."""

    def __init__(self, name: str, size: int) -> None:
        super().__init__(name, expected_duration=0.5)
        self.size = size

    def run(self, state: BlobState, ctx: StageContext[BlobState]) -> Blob:
        return Blob(data="r" * self.size)


class Context:
    aws_request_id = "size-test"

    def __init__(self, seconds: float) -> None:
        self._ends = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._ends - time.monotonic()) * 1000))


def _size(value: Any) -> int:
    return len(json.dumps(value))


def test_a_300_kib_result_on_s3_is_pointed_at_through_the_state_machine(
    moto_server_url: str, s3_bucket: str, s3_client: Any
) -> None:
    size = 300 * 1024
    store = ec.open_store(f"s3://{s3_bucket}/ck", endpoint_url=moto_server_url)

    def build(event: Any) -> TaskEngine[BlobState]:
        stages = [Produce("first", size), Produce("final", size)]
        return TaskEngine(event["task_id"], stages, BlobState, store)

    handler = lambda_handler(build, safety_margin=0.5)
    payloads: list[dict[str, Any]] = []

    def invoke(_function: str, event: Any) -> Any:
        out = handler(event, Context(30.0))
        payloads.append(out)
        return out

    execution = asl.run(asl.load("task-loop.asl.json"), {"task_id": "big-300k"}, invoke)

    assert execution.status == "SUCCEEDED", execution
    (out,) = payloads
    # Before: 608,857 bytes (the result twice), over Step Functions' 256 KiB.
    assert _size(out) <= RESPONSE_BUDGET_BYTES < SFN_LIMIT
    assert "r" * 1000 not in json.dumps(out)  # no result data at all
    assert out["done"] is True and out["status"] == "COMPLETE"
    assert [(s["name"], s["status"], s["attempts"], s["has_result"]) for s in out["stages"]] == [
        ("first", "COMPLETE", 1, True),
        ("final", "COMPLETE", 1, True),
    ]
    assert out["stage_counts"] == {"COMPLETE": 2} and out["truncated"] == {}
    results = out["results"]
    assert results == {
        "store_url": f"s3://{s3_bucket}/ck",
        "task_prefix": "ck/big-300k/",
        "final_stage": "final",
        "final_key": "ck/big-300k/final.json",
        "final_url": f"s3://{s3_bucket}/ck/big-300k/final.json",
        "has_final_result": True,
    }
    # The pointer leads to the result: through the library, and as a plain S3 object.
    reopened = ec.open_store(results["store_url"], endpoint_url=moto_server_url)
    final = reopened.load("big-300k", results["final_stage"], BlobState)
    assert final.result is not None and len(final.result.data) == size
    body = s3_client.get_object(Bucket=s3_bucket, Key=results["final_key"])["Body"].read()
    assert b"r" * size in body
    first_key = results["task_prefix"] + out["stages"][0]["name"] + ".json"
    assert s3_client.head_object(Bucket=s3_bucket, Key=first_key)["ContentLength"] > size


def test_a_30_mb_result_gives_a_response_of_a_few_hundred_bytes() -> None:
    size = 30_000_000
    store = ec.open_store("memory://thirty")

    def build(event: Any) -> TaskEngine[BlobState]:
        return TaskEngine(event["task_id"], [Produce("huge", size)], BlobState, store)

    out = lambda_handler(build, safety_margin=0.5)({"task_id": "big-30m"}, Context(60.0))

    # Before: 60,000,600 bytes, ten times Lambda's 6 MB response limit.
    assert out["done"] is True and out["status"] == "COMPLETE"
    assert _size(out) < 2048
    assert out["results"]["final_key"] == store.stage_key("big-30m", "huge")
    assert out["results"]["has_final_result"] is True
    result = store.load("big-30m", "huge", BlobState).result
    assert result is not None and len(result.data) == size


def test_a_huge_failure_message_is_clipped_and_says_so() -> None:
    class Fails(BaseStage[BlobState]):
        def run(self, state: BlobState, ctx: StageContext[BlobState]) -> None:
            raise RuntimeError("\x1b\u2603" * 200_000)  # 200k escapes to 1.4 MB of JSON

    store = ec.open_store("memory://clip")

    def build(event: Any) -> TaskEngine[BlobState]:
        return TaskEngine(
            event["task_id"],
            [Fails("bad", expected_duration=0.1)],
            BlobState,
            store,
            retry_policy=ec.RetryPolicy.NONE,
        )

    out = lambda_handler(build, safety_margin=0.5)({"task_id": "loud"}, Context(10.0))
    assert out["status"] == "ERROR" and out["done"] is True
    assert _size(out) <= RESPONSE_BUDGET_BYTES
    (stage,) = out["stages"]
    assert _size(stage["last_message"]) - 2 <= STAGE_MESSAGE_MAX_BYTES
    assert stage["last_message"].endswith("characters in all]")
    assert out["truncated"]["stage_messages"] == 1


# -- the size bound as a property -----------------------------------------------------

STATUSES = list(StageStatus)
# Few distinct characters, cheap to generate at any length: ASCII, a control character
# (6 bytes escaped), a BMP and an astral character (6 and 12 bytes escaped).
CHARS = st.sampled_from(["a", '"', "\x07", "\u00e9", "\U0001f600"])


@dataclass(frozen=True)
class Shape:
    """What a generated task looks like; small, so a failing example prints small."""

    count: int
    name_length: int
    message_size: int
    stage_message_size: int
    char: str
    done_upto: int
    tail_status: StageStatus
    attempts: int
    ran: int

    def build(self) -> tuple[TaskSummary, list[str]]:
        stages = [
            StageSummary(
                f"{i:05d}".ljust(self.name_length, "n"),
                StageStatus.COMPLETE if i < self.done_upto else self.tail_status,
                attempts=self.attempts if i == self.done_upto else 1,
                last_message=self.char * self.stage_message_size if i % 3 else None,
                last_run_seconds=1.5,
                result={"big": "x" * 100} if i == self.count - 1 else None,
            )
            for i in range(self.count)
        ]
        return _summary(stages, self.char * self.message_size), [s.name for s in stages][: self.ran]


@st.composite
def shapes(draw: st.DrawFn) -> Shape:
    count = draw(st.integers(0, 2500))
    return Shape(
        count=count,
        name_length=draw(st.integers(1, 150)),
        message_size=draw(st.sampled_from([0, 10, 300, 5000, 1_000_000])),
        stage_message_size=draw(st.sampled_from([0, 5, 256, 257, 4000])),
        char=draw(CHARS),
        # Real tasks are COMPLETE up to a point, then one status for the rest.
        done_upto=draw(st.integers(0, count)),
        tail_status=draw(st.sampled_from(STATUSES)),
        attempts=draw(st.integers(0, 10**6)),
        ran=draw(st.integers(0, count)),
    )


def _summary(stages: list[StageSummary], message: str) -> TaskSummary:
    """A TaskSummary as the engine builds one (status and next stage from the stages)."""
    from eleanor_cloud.engine.summary import overall_status

    status = overall_status([s.status for s in stages])
    done = status in (StageStatus.COMPLETE, StageStatus.ERROR, StageStatus.CANCELED)
    next_stage = None
    if not done:
        next_stage = next((s.name for s in stages if s.status is not StageStatus.COMPLETE), None)
    result = stages[-1].result if stages else None
    return TaskSummary("t" * 200, status, done, next_stage, stages, result, message)


def _respond(summary: TaskSummary, ran: list[str]) -> dict[str, Any]:
    return bounded_response(
        summary,
        # The largest loop fields the handler can return: the budget must hold them too.
        loop={
            "wait_seconds": 7,
            "lease_held": True,
            "lease_watch": {"version": "v" * VERSION_MAX_CHARS, "seconds": 1e9},
        },
        stages_run=ran,
        pointer={
            "store_url": "s3://b/" + "p" * 900,
            "task_prefix": "p" * 900 + "/" + summary.task_id + "/",
            "final_stage": summary.stages[-1].name if summary.stages else None,
            "final_key": "k" * 1024,
            "final_url": "s3://b/" + "k" * 1024,
        },
        invocation={"request_id": "r" * 128, "budget_seconds": 1.0},
    )


@settings(
    max_examples=60,
    deadline=None,  # sizes are asserted, never times
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(shapes())
def test_the_response_never_exceeds_the_budget(shape: Shape) -> None:
    summary, ran = shape.build()
    out = _respond(summary, ran)

    assert _size(out) <= RESPONSE_BUDGET_BYTES
    assert out == _respond(summary, ran)  # deterministic
    # The loop's fields are never cut.
    assert out["task_id"] == summary.task_id and out["status"] == summary.status.value
    assert out["done"] is summary.done and out["next_stage"] == summary.next_stage
    # The loop's fields pass through whole, however much else was cut.
    assert out["wait_seconds"] == 7 and out["lease_held"] is True
    assert out["lease_watch"] == {"version": "v" * VERSION_MAX_CHARS, "seconds": 1e9}
    assert "x" * 100 not in json.dumps(out)  # no results
    assert sum(out["stage_counts"].values()) == len(summary.stages)
    notes = out["truncated"]
    event(f"cut: {', '.join(sorted(notes)) or 'nothing'}")  # --hypothesis-show-statistics
    # The message: whole, or clipped within its cap and noted.
    if "message" in notes:
        assert notes["message"] == len(summary.message)
        assert _size(out["message"]) - 2 <= MESSAGE_MAX_BYTES
    else:
        assert out["message"] == summary.message
    # The stage table: whole, or a noted contiguous window that holds the next stage.
    shown = out["stages"]
    if "stages" in notes:
        window = notes["stages"]
        assert window["total"] == len(summary.stages) and window["shown"] == len(shown)
        expected = summary.stages[window["offset"] : window["offset"] + window["shown"]]
        assert [s["name"] for s in shown] == [s.name for s in expected]
        names = [s["name"] for s in shown]
        reaches_end = window["offset"] + window["shown"] == len(summary.stages)
        # The first stage not COMPLETE (the next stage, or the failed one) leads the
        # window, unless the window reached the end and looked back from there; a
        # finished task shows its last stages.
        first_open = next(
            (s.name for s in summary.stages if s.status is not StageStatus.COMPLETE), None
        )
        if first_open is not None and shown:
            assert names[0] == first_open or (reaches_end and first_open in names)
        if first_open is None and shown:
            assert reaches_end
    else:
        assert [s["name"] for s in shown] == [s.name for s in summary.stages]
    for stage, entry in _pairs(out, summary):
        assert entry["status"] == stage.status.value and entry["attempts"] == stage.attempts
        if entry["last_message"] is not None:
            assert _size(entry["last_message"]) - 2 <= STAGE_MESSAGE_MAX_BYTES
    if any(s.last_message and s.last_message != e["last_message"] for s, e in _pairs(out, summary)):
        assert notes.get("stage_messages", 0) >= 1
    # The stages run: whole, or a noted prefix.
    if "stages_run" in notes:
        assert notes["stages_run"] == {"total": len(ran), "shown": len(out["stages_run"])}
        assert out["stages_run"] == ran[: len(out["stages_run"])]
    else:
        assert out["stages_run"] == ran


def _pairs(out: dict[str, Any], summary: TaskSummary) -> list[tuple[StageSummary, Any]]:
    offset = out["truncated"].get("stages", {}).get("offset", 0)
    return list(zip(summary.stages[offset:], out["stages"], strict=False))


def test_a_small_task_is_reported_whole() -> None:
    stages = [
        StageSummary("a", StageStatus.COMPLETE, 1, "done", 0.5, result={"n": 1}),
        StageSummary("b", StageStatus.RETRY, 2, "boom", 0.1),
        StageSummary("c", StageStatus.CREATED),
    ]
    out = _respond(_summary(stages, "deadline"), ["a", "b"])
    assert out["truncated"] == {}
    assert out["stages"] == [
        {
            "name": "a",
            "status": "COMPLETE",
            "attempts": 1,
            "last_run_seconds": 0.5,
            "last_message": "done",
            "has_result": True,
        },
        {
            "name": "b",
            "status": "RETRY",
            "attempts": 2,
            "last_run_seconds": 0.1,
            "last_message": "boom",
            "has_result": False,
        },
        {
            "name": "c",
            "status": "CREATED",
            "attempts": 0,
            "last_run_seconds": None,
            "last_message": None,
            "has_result": False,
        },
    ]
    assert out["next_stage"] == "b" and out["stage_counts"] == {
        "COMPLETE": 1,
        "RETRY": 1,
        "CREATED": 1,
    }


def test_thousands_of_stages_show_a_window_from_the_next_stage() -> None:
    stages = [
        StageSummary(f"s{i:04d}", StageStatus.COMPLETE if i < 4200 else StageStatus.CREATED, 1)
        for i in range(5000)
    ]
    out = _respond(_summary(stages, ""), [])
    window = out["truncated"]["stages"]
    assert window["total"] == 5000 and window["offset"] == 4200
    assert 50 <= window["shown"] == len(out["stages"]) < 800
    assert out["stages"][0]["name"] == "s4200" == out["next_stage"]
    assert _size(out) <= RESPONSE_BUDGET_BYTES


def test_the_last_resort_keeps_even_a_tiny_budget() -> None:
    stages = [StageSummary(f"s{i}", StageStatus.CREATED, 0, "m" * 300) for i in range(50)]
    summary = _summary(stages, "why " * 10_000)
    out = bounded_response(
        summary,
        loop={"wait_seconds": 0, "lease_held": False},
        stages_run=[],
        pointer={"final_stage": "s49"},
        invocation={},
        budget=2048,
    )
    assert _size(out) <= 2048
    assert out["stages"] == [] and out["message"] == ""
    assert out["truncated"]["stages"] == {"total": 50, "offset": 0, "shown": 0}
    assert out["truncated"]["message"] == len(summary.message)
    assert out["next_stage"] == "s0" and out["done"] is False


def test_the_pointer_names_the_store_the_prefix_and_the_final_object() -> None:
    store = ec.open_store("memory://where")
    assert results_pointer(store, "t1", "last") == {
        "store_url": "memory://where",
        "task_prefix": "t1/",
        "final_stage": "last",
        "final_key": "t1/last.json",
        "final_url": "memory://where/t1/last.json",
    }
    assert results_pointer(None, "t1", "last")["final_key"] is None


def test_the_handler_points_at_the_engines_public_store() -> None:
    # The handler reads the engine's public ``store`` and ``lease_options``, no private
    # attribute: a real engine, through the handler, names its own store.
    store = ec.open_store("memory://real")

    def build(event: Any) -> TaskEngine[BlobState]:
        return TaskEngine(event["task_id"], [Produce("p", 1)], BlobState, store)

    out = lambda_handler(build, safety_margin=0.5)({"task_id": "t"}, Context(10.0))
    assert out["results"]["store_url"] == "memory://real"
    assert out["results"]["final_key"] == "t/p.json"
