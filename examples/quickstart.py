"""A two-stage task, checkpointed into the embedded default store (./.eleanor).

Run it directly (``python examples/quickstart.py``) or through the CLI, which imports
the ``build`` factory and resumes the task wherever it stopped::

    cd examples && eleanor-cloud run quickstart:build --task-id quickstart
    eleanor-cloud status quickstart
"""

from __future__ import annotations

from pydantic import Field

import eleanor_cloud as ec
from eleanor_cloud.engine import BaseStage, StageContext, TaskEngine


class PipelineState(ec.BaseStageState[ec.SimpleRecordsResult]):
    """Fields shared by every stage of the task."""

    rows: list[int] = Field(default_factory=list)


class Extract(BaseStage[PipelineState]):
    name = "extract"

    def run(self, state: PipelineState, ctx: StageContext[PipelineState]) -> None:
        state.rows = list(range(10))  # saved with the stage's state when it completes


class Load(BaseStage[PipelineState]):
    name = "load"

    def run(self, state: PipelineState,
            ctx: StageContext[PipelineState]) -> ec.SimpleRecordsResult:
        rows = ctx.state_of("extract").rows  # earlier stages' states are readable
        loaded = [r for r in rows if r % 4]
        return ec.SimpleRecordsResult(total_count=len(rows), success_count=len(loaded),
                                      fail_count=len(rows) - len(loaded))


def build(task_id: str, store: ec.StateStore) -> TaskEngine[PipelineState]:
    """The factory ``eleanor-cloud run quickstart:build`` calls."""
    return TaskEngine(task_id, [Extract(), Load()], PipelineState, store)


def main() -> None:
    summary = build("quickstart", ec.open_store(".eleanor")).run()
    print(f"{summary.task_id}: {summary.status.value}, result {summary.result}")


if __name__ == "__main__":
    # As a script this file is the module "__main__"; import it by its name so that the
    # state class recorded in the task manifest is "quickstart.PipelineState", as when
    # `eleanor-cloud run quickstart:build` imports it (a mismatch is a TaskBindingError).
    import quickstart

    quickstart.main()
