"""An example eleanor_cloud task for the Lambda and ECS templates in infra/.

Three stages share one state class; each declares an ``expected_duration`` so a Lambda
invocation starts only the stages that fit in its remaining time.

- Lambda (infra/lambda-runner.yaml): ``Handler: example_task.handler``; the event is
  ``{"task_id": "job-42", "records": 1000}``; the store is ``$ELEANOR_STORE``.
- ECS (infra/ecs-runner.yaml): ``eleanor-cloud run example_task:build_engine --task-id
  job-42`` (or ``python -m eleanor_cloud.aws example_task:build_engine --task-id job-42``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from eleanor_cloud import BaseStageState, RetryPolicy, SimpleRecordsResult, StateStore
from eleanor_cloud.aws import lambda_handler, store_from_env
from eleanor_cloud.engine import BaseStage, StageContext, TaskEngine


class ExampleState(BaseStageState[SimpleRecordsResult]):
    """Fields every stage may set and later stages may read."""

    records: int = 0
    checksum: str = ""


class Generate(BaseStage[ExampleState]):
    name = "generate"
    expected_duration = 5.0

    def __init__(self, records: int = 1000) -> None:
        super().__init__()
        self.records = records

    def run(self, state: ExampleState, ctx: StageContext[ExampleState]) -> None:
        state.records = self.records


class Digest(BaseStage[ExampleState]):
    name = "digest"
    expected_duration = 30.0

    def run(self, state: ExampleState, ctx: StageContext[ExampleState]) -> None:
        count = ctx.state_of("generate").records
        digest = hashlib.sha256()
        for i in range(count):
            digest.update(i.to_bytes(8, "big"))
        state.checksum = digest.hexdigest()


class Publish(BaseStage[ExampleState]):
    name = "publish"
    expected_duration = 5.0

    def run(self, state: ExampleState, ctx: StageContext[ExampleState]) -> SimpleRecordsResult:
        count = ctx.state_of("generate").records
        return SimpleRecordsResult(total_count=count, success_count=count,
                                   message=f"sha256 {ctx.state_of('digest').checksum[:12]}")


def build_engine(task_id: str, store: StateStore, records: int = 1000) -> TaskEngine[ExampleState]:
    """The factory the CLI and the container runner call: ``(task_id, store)``."""
    return TaskEngine(task_id, [Generate(records), Digest(), Publish()], ExampleState, store,
                      retry_policy=RetryPolicy.STAGE, max_attempts=3, lease_ttl=60.0)


def _from_event(event: Mapping[str, Any]) -> TaskEngine[ExampleState]:
    return build_engine(str(event["task_id"]), store_from_env(),
                        records=int(event.get("records", 1000)))


handler = lambda_handler(_from_event)
