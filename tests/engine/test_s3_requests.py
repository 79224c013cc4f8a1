"""Request budget on S3 (moto in-process): every HTTP request botocore sends is counted."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from eleanor_cloud.engine import TaskEngine
from eleanor_cloud.models import StageStatus
from eleanor_cloud.store import StateStore
from tests.engine.taskdefs import DemoState, FnStage, Out


@pytest.fixture
def s3_store() -> Iterator[tuple[StateStore, Counter[str]]]:
    boto3 = pytest.importorskip("boto3")
    from moto import mock_aws

    from eleanor_cloud.backends.s3 import S3Backend, clear_probe_cache

    clear_probe_cache()  # a fresh process: it has not probed this endpoint yet
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="engine-requests")
        sent: Counter[str] = Counter()

        def count(**kwargs: Any) -> None:
            request = kwargs["request"]
            sent[request.method] += 1

        client.meta.events.register("before-send.s3.*", count)
        yield StateStore(S3Backend("engine-requests", client=client), "runs"), sent


def stages(n: int) -> list[FnStage]:
    return [FnStage(f"stage-{i:02d}", lambda s, c: Out(value=c.attempt)) for i in range(n)]


def test_uninterrupted_10_stage_run_costs_2n_plus_3_requests_and_5_for_the_index(
    s3_store: tuple[StateStore, Counter[str]],
) -> None:
    from eleanor_cloud.backends.s3 import PROBE_REQUESTS

    store, sent = s3_store
    n = 10
    summary = TaskEngine("t", stages(n), DemoState, store).run()
    assert summary.status is StageStatus.COMPLETE
    # The process's first conditional write to this bucket probes it, once.
    # The task index: CREATED at bind, two moves of a PUT and a DELETE (see test_run).
    assert sent == {"PUT": 2 * n + 3 + 3 + PROBE_REQUESTS, "DELETE": 2}
    sent.clear()
    assert TaskEngine("t2", stages(n), DemoState, store).run().status is StageStatus.COMPLETE
    total = sum(sent.values())
    print(f"\nN={n}: {total} S3 requests for a fresh run ({dict(sent)})")
    assert total == (2 * n + 3) + 5
    assert sent == {"PUT": 2 * n + 3 + 3, "DELETE": 2}


def test_resume_of_a_completed_10_stage_task_is_n_gets_and_no_lease(
    s3_store: tuple[StateStore, Counter[str]],
) -> None:
    store, sent = s3_store
    n = 10
    TaskEngine("t", stages(n), DemoState, store).run()
    sent.clear()
    summary = TaskEngine("t", stages(n), DemoState, store).run()
    assert summary.status is StageStatus.COMPLETE
    total = sum(sent.values())
    print(f"\nN={n}: {total} S3 requests to resume a completed task ({dict(sent)})")
    # manifest: refused create + its read; then one GET per stage; no LIST, no lease
    assert sent["GET"] == 1 + n
    assert sent["PUT"] == 1
    assert total == n + 2
