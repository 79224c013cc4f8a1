"""Lost responses on S3 (a fault proxy in front of moto's HTTP server): a conditional
write that landed but whose answer never came back is recognised as our own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent

import eleanor_cloud as ec
from eleanor_cloud.backends.s3 import clear_probe_cache
from eleanor_cloud.integrations.powertools import ObjectStorePersistenceLayer
from tests.integrations.powertools.conftest import FakeClock, LambdaContext
from tests.s3.helpers import assume_conditions_honoured
from tests.support.proxy import FORWARD_THEN_DROP, FaultProxy, matching


@pytest.fixture
def proxy(moto_server_url: str, s3_bucket: str) -> Iterator[FaultProxy]:
    clear_probe_cache()
    with FaultProxy(moto_server_url) as running:
        assume_conditions_honoured(running.url, s3_bucket)
        yield running
    clear_probe_cache()


@pytest.mark.parametrize("lost", ["If-None-Match", "If-Match"])
def test_a_lost_answer_to_our_own_write_is_not_a_conflict(
    proxy: FaultProxy, s3_bucket: str, clock: FakeClock, lost: str
) -> None:
    store = ec.open_store(f"s3://{s3_bucket}/idem", endpoint_url=proxy.url)
    layer = ObjectStorePersistenceLayer(store, clock=clock)
    runs: list[Any] = []

    @idempotent(persistence_store=layer, config=IdempotencyConfig(event_key_jmespath="k"))
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        runs.append(event)
        return {"ok": event["k"]}

    # The create (If-None-Match) or the completion (If-Match) lands; its answer is lost;
    # botocore retries and is refused with 412; one GET shows the write was ours.
    proxy.inject(FORWARD_THEN_DROP, when=matching(method="PUT", header=lost))
    assert handler({"k": "a"}, LambdaContext()) == {"ok": "a"}
    assert proxy.pending() == 0
    assert handler({"k": "a"}, LambdaContext()) == {"ok": "a"}
    assert len(runs) == 1
