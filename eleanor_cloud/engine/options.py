"""Every argument of the engine and the lease, checked once, before any I/O.

:class:`LeaseOptions` is shared by the engine and the store-only operations that take
the lease (``rollback_task``), so a lease argument is validated by one rule wherever it
enters. :class:`TaskSpec` is what a :class:`~eleanor_cloud.engine.TaskEngine` was built
from, frozen: the run, the attempt and the saga read it and never re-check it.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import TypeAdapter, ValidationError

from eleanor_cloud.clock import Clock, utc_now
from eleanor_cloud.engine.backoff import Backoff
from eleanor_cloud.engine.stage import BaseStage
from eleanor_cloud.errors import InvalidState, first_error
from eleanor_cloud.keys import validate_task_id
from eleanor_cloud.models import BaseStageState, RetryPolicy, StageStatus

__all__ = ["LeaseOptions", "TaskSpec", "check_reason", "default_holder", "run_window"]


def default_holder() -> str:
    """``host/pid/random``: unique per engine instance, readable in the lease object."""
    return f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"


def _seconds(name: str, value: object, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidState(f"{name} must be a number of seconds, got {value!r}")
    if positive and not value > 0:
        raise InvalidState(f"{name} must be > 0 seconds, got {value}")
    if not positive and not value >= 0:  # also refuses NaN
        raise InvalidState(f"{name} must be >= 0 seconds, got {value}")
    return float(value)


@dataclass(frozen=True)
class LeaseOptions:
    """How a lease is held: ``ttl`` renewed every ``renew_interval`` (default ttl/3);
    a held lease is polled for ``wait`` seconds; ``clock_skew_tolerance`` is added to a
    lease's TTL before a challenger counts it abandoned."""

    ttl: float = 60.0
    wait: float = 0.0
    clock_skew_tolerance: float = 5.0
    renew_interval: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "ttl", _seconds("lease_ttl", self.ttl, positive=True))
        object.__setattr__(self, "wait", _seconds("wait_for_lease", self.wait))
        object.__setattr__(
            self,
            "clock_skew_tolerance",
            _seconds("clock_skew_tolerance", self.clock_skew_tolerance),
        )
        if self.renew_interval is not None:
            interval = _seconds("renew_interval", self.renew_interval, positive=True)
            object.__setattr__(self, "renew_interval", interval)

        if not self.interval < self.ttl - self.margin:
            raise InvalidState(
                f"renew_interval ({self.interval}s) must be shorter than the lease's TTL "
                f"minus its safety margin ({self.ttl - self.margin:.3f}s), or the lease "
                "would expire locally before its first renewal"
            )

    @property
    def interval(self) -> float:
        """Seconds between renewals."""
        return self.renew_interval if self.renew_interval is not None else self.ttl / 3

    @property
    def margin(self) -> float:
        """How long before its TTL runs out a holder stops by its own clock (TTL/10).

        A challenger needs TTL + skew tolerance of watching after the renewal landed;
        the holder stops TTL - margin after it *sent* it, so the two never overlap as
        long as the hosts' clocks run at nearly the same rate.
        """
        return self.ttl / 10


def _dotted(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _check_stages(task_id: str, stages: object) -> tuple[list[BaseStage[Any]], tuple[str, ...]]:
    if isinstance(stages, BaseStage):
        stage_list: list[BaseStage[Any]] = [stages]
    elif isinstance(stages, Sequence) and not isinstance(stages, str):
        stage_list = list(stages)
    else:
        raise InvalidState(f"task {task_id!r}: stages must be a list of BaseStage, got {stages!r}")
    if not stage_list:
        raise InvalidState(f"task {task_id!r}: stages must not be empty")
    names: list[str] = []
    for stage in stage_list:
        if not isinstance(stage, BaseStage):
            raise InvalidState(
                f"task {task_id!r}: every stage must be a BaseStage instance, got {stage!r}"
            )
        name = stage.stage_name
        if name in names:
            raise InvalidState(f"task {task_id!r}: duplicate stage name {name!r}")
        duration = stage.expected_duration
        if duration is not None and not duration >= 0:
            raise InvalidState(
                f"stage {name!r}: expected_duration must be >= 0 seconds, got {duration}"
            )
        names.append(name)
    return stage_list, tuple(names)


@dataclass(frozen=True)
class TaskSpec:
    """A task's definition and the engine's options, validated (see ``TaskEngine``)."""

    task_id: str
    stages: tuple[BaseStage[Any], ...]
    stage_names: tuple[str, ...]
    state_class: type[BaseStageState[Any]]
    retry_policy: RetryPolicy
    max_attempts: int
    backoff: Backoff
    lease: LeaseOptions
    auto_rollback: bool
    cancel_check_interval: float
    holder: str
    metadata: dict[str, str]
    clock: Clock = utc_now
    sleep: Callable[[float], None] = time.sleep
    result_adapter: TypeAdapter[Any] = field(default_factory=lambda: TypeAdapter(Any))

    @property
    def state_class_path(self) -> str:
        return _dotted(self.state_class)

    def fresh_state(self, name: str) -> Any:
        """The state of a stage that has no stored object yet."""
        return self.state_class(task_id=self.task_id, stage_name=name, status=StageStatus.CREATED)

    @classmethod
    def build(
        cls,
        task_id: str,
        stages: object,
        state_class: object,
        *,
        retry_policy: object,
        max_attempts: object,
        backoff: object,
        lease: LeaseOptions,
        auto_rollback: bool,
        cancel_check_interval: object,
        holder: str,
        metadata: object,
        clock: Clock,
        sleep: Callable[[float], None],
    ) -> TaskSpec:
        task_id = validate_task_id(task_id)
        if not isinstance(state_class, type) or not issubclass(state_class, BaseStageState):
            raise InvalidState(
                f"state_class must be a subclass of BaseStageState, got {state_class!r}"
            )
        stage_list, names = _check_stages(task_id, stages)
        if not isinstance(retry_policy, RetryPolicy):
            raise InvalidState(f"retry_policy must be a RetryPolicy, got {retry_policy!r}")
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise InvalidState(f"max_attempts must be an int >= 1, got {max_attempts!r}")
        if retry_policy is RetryPolicy.GLOBAL and max_attempts < len(names):
            raise InvalidState(
                f"GLOBAL retry policy: max_attempts ({max_attempts}) is below the number of "
                f"stages ({len(names)}); every execution consumes an attempt, so the task "
                "could never complete"
            )
        if backoff is None:
            backoff = Backoff()
        elif not isinstance(backoff, Backoff):
            raise InvalidState(f"backoff must be a Backoff, got {backoff!r}")
        interval = _seconds("cancel_check_interval", cancel_check_interval)
        if metadata is None:
            metadata = {}
        if not (
            isinstance(metadata, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
        ):
            raise InvalidState(f"metadata must be a dict of str to str, got {metadata!r}")
        # A stage with no stored object reads as a fresh state, so one must be buildable.
        try:
            state_class(task_id=task_id, stage_name=names[0], status=StageStatus.CREATED)
        except ValidationError as exc:
            raise InvalidState(
                f"state class {state_class.__name__} needs defaults for every field of its "
                f"own (stages that have not run have no stored state): {first_error(exc)}"
            ) from exc
        result_type: Any = state_class.model_fields["result"].annotation
        return cls(
            task_id=task_id,
            stages=tuple(stage_list),
            stage_names=names,
            state_class=state_class,
            retry_policy=retry_policy,
            max_attempts=max_attempts,
            backoff=backoff,
            lease=lease,
            auto_rollback=bool(auto_rollback),
            cancel_check_interval=interval,
            holder=holder,
            metadata=dict(metadata),
            clock=clock,
            sleep=sleep,
            # Validates what a stage returns against the state's own result type.
            result_adapter=TypeAdapter(Any if result_type is None else result_type),
        )


def check_reason(reason: object) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidState(f"reason must be a non-empty string, got {reason!r}")
    return reason


def run_window(
    clock: Clock, deadline: object = None, time_budget: object = None
) -> datetime | None:
    """The end of a run from ``deadline`` (aware datetime) and ``time_budget`` (seconds)."""
    if deadline is not None and (not isinstance(deadline, datetime) or deadline.tzinfo is None):
        raise InvalidState(f"deadline must be a timezone-aware datetime, got {deadline!r}")
    end = deadline
    if time_budget is not None:
        by_budget = clock() + timedelta(seconds=_seconds("time_budget", time_budget))
        end = by_budget if end is None else min(end, by_budget)
    return end
