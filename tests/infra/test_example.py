"""The example task the templates deploy (infra/example/example_task.py) really runs:
as the Lambda handler (store from $ELEANOR_STORE) and as the container runner's factory."""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Iterator
from types import ModuleType

import pytest

import eleanor_cloud as ec
from eleanor_cloud.aws import EXIT_OK, ContainerRunner
from tests.infra.templates import INFRA


def _load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "example_task", INFRA / "example" / "example_task.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # As an import would: pydantic resolves the generic state class through sys.modules.
    sys.modules["example_task"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _forget_example() -> Iterator[None]:
    yield
    sys.modules.pop("example_task", None)


class _Ctx:
    aws_request_id = "example"

    def __init__(self, seconds: float) -> None:
        self._ends = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return int((self._ends - time.monotonic()) * 1000)


def test_example_lambda_handler_completes_on_s3(
    monkeypatch: pytest.MonkeyPatch, moto_server_url: str, s3_bucket: str
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_server_url)
    monkeypatch.setenv("ELEANOR_STORE", f"s3://{s3_bucket}/eleanor")
    example = _load_example()
    # 100 s left: all three stages (5 + 30 + 5 s expected) fit after the 10 s margin.
    out = example.handler({"task_id": "example-1", "records": 500}, _Ctx(100.0))
    assert out["done"] is True and out["status"] == "COMPLETE"
    assert out["stages_run"] == ["generate", "digest", "publish"]
    # The response points at the result rather than carrying it: follow the pointer.
    assert "result" not in out
    results = out["results"]
    assert results["store_url"] == f"s3://{s3_bucket}/eleanor" and results["has_final_result"]
    store = ec.open_store(results["store_url"], endpoint_url=moto_server_url)
    final = store.load("example-1", results["final_stage"], example.ExampleState)
    assert final.result is not None and final.result.total_count == 500
    assert store.stage_key("example-1", "publish") == results["final_key"]
    # 30 s left: only "generate" fits before "digest" (30 s expected): work left, loop.
    out = example.handler({"task_id": "example-2", "records": 500}, _Ctx(30.0))
    assert out["done"] is False and out["stages_run"] == ["generate"]
    assert out["next_stage"] == "digest" and out["wait_seconds"] == 0


def test_example_factory_runs_under_the_container_runner() -> None:
    example = _load_example()
    store = ec.open_store("memory://")
    outcome = ContainerRunner(example.build_engine("example-ecs", store), grace_seconds=5).run()
    assert outcome.exit_code == EXIT_OK
    assert outcome.summary is not None and outcome.summary.result.success_count == 1000
