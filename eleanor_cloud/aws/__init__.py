"""Run eleanor_cloud tasks on AWS: a Lambda handler factory and an ECS/container runner.

    from eleanor_cloud.aws import lambda_handler, run_container, store_from_env

- :func:`lambda_handler` turns ``build_engine(event) -> TaskEngine`` into
  ``handler(event, context)``: it runs stages while the invocation's remaining time
  leaves room (a records stage suspends at a checkpoint and resumes in the next
  invocation), releases the lease and returns ``{"task_id", "status", "done",
  "next_stage", "wait_seconds", ...}`` for a Step Functions loop (see
  ``infra/statemachine/task-loop.asl.json``).
- :func:`run_container` runs a task in a container and handles SIGTERM (ECS stop,
  Fargate Spot interruption): the current stage may finish within a grace period (a
  records stage stops at its next batch boundary, checkpointed), otherwise its attempt
  is recorded as interrupted and the lease released; the exit code says which
  (:data:`EXIT_STOPPED`, :data:`EXIT_INTERRUPTED`).
- Fanned-out stages (a stage with ``plan()``): the handler also takes *shard events*
  (the task event plus ``stage``, ``shard``, ``plan_id``; see
  :mod:`eleanor_cloud.aws.lambda_shard` and ``infra/statemachine/shard-fan-out.asl.json``),
  and :func:`run_shard_container` runs one shard in a container, the shard given or
  taken from ``$AWS_BATCH_JOB_ARRAY_INDEX`` (:mod:`eleanor_cloud.aws.shard_runner`).

Importing this package loads neither boto3 nor the engine: the S3 backend is imported
when a store is opened, so a handler module's cold start pays only for what it uses.
"""

from __future__ import annotations

from eleanor_cloud.aws.env import store_from_env
from eleanor_cloud.aws.lambda_handler import (
    DEFAULT_SAFETY_MARGIN,
    InvalidEvent,
    StageDoesNotFit,
    lambda_handler,
)
from eleanor_cloud.aws.lambda_shard import StalePlan, UnknownShard, UnknownStage
from eleanor_cloud.aws.runner import (
    DEFAULT_GRACE_SECONDS,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_STOPPED,
    EXIT_WORK_LEFT,
    ContainerRunner,
    grace_from_env,
    run_container,
)
from eleanor_cloud.aws.shard_runner import ShardRunner, run_shard_container

__all__ = [
    "DEFAULT_GRACE_SECONDS",
    "DEFAULT_SAFETY_MARGIN",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_STOPPED",
    "EXIT_WORK_LEFT",
    "ContainerRunner",
    "InvalidEvent",
    "ShardRunner",
    "StageDoesNotFit",
    "StalePlan",
    "UnknownShard",
    "UnknownStage",
    "grace_from_env",
    "lambda_handler",
    "run_container",
    "run_shard_container",
    "store_from_env",
]
