"""Write a stage state into the embedded default store (./.eleanor) and read it back."""

from __future__ import annotations

import eleanor_cloud as ec


class PipelineState(ec.BaseStageState[ec.SimpleRecordsResult]):
    source: str = ""


def main() -> None:
    store = ec.open_store(".eleanor")
    state = PipelineState(task_id="quickstart", stage_name="extract", source="s3://raw/day=1",
                          status=ec.StageStatus.COMPLETE, attempts=1,
                          result=ec.SimpleRecordsResult(total_count=10, success_count=10))
    try:
        record = store.create(state)
    except ec.AlreadyExists:
        record = store.load_record("quickstart", "extract", PipelineState)
        record = store.save(record.value.model_copy(update={"attempts": record.value.attempts + 1}))
    loaded = store.load("quickstart", "extract", PipelineState)
    print(f"{record.key}: revision {record.revision}, status {loaded.status.value}, "
          f"attempts {loaded.attempts}, result {loaded.result}")


if __name__ == "__main__":
    main()
