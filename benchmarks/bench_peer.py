"""6. A peer: Powertools for AWS Lambda idempotency (DynamoDB) next to a one-stage
eleanor_cloud task (S3), each protecting the same function call, both on moto
in-process (``mock_aws``), in the same run.

"first" is a call with a new idempotency key (the function runs); "repeat" is the same
key again (the stored result is returned, the function does not run). Requests are
counted with ``before-send`` hooks on both clients. A raw boto3 replay of eleanor's
first-call requests shows how much of the gap is the requests themselves (their number,
and moto's S3 costing more per request than its DynamoDB) and how much is our code.
"""

from __future__ import annotations

import itertools
from typing import Any

from benchmarks._util import (
    REGION,
    RequestLog,
    by_operation,
    interleaved,
    median,
    new_bucket,
    ratio,
    summary,
    table,
    warm_probe,
)
from benchmarks.bench_overhead import replay
from benchmarks.workload import run_task

TABLE = "bench-idempotency"


class _LambdaContext:
    """What Powertools asks of a Lambda context (the remaining time, for in-progress expiry)."""

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def run(rounds: int) -> dict[str, Any]:
    import boto3
    from aws_lambda_powertools.utilities.idempotency import (
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
        idempotent_function,
    )
    from moto import mock_aws

    from eleanor_cloud import open_store

    calls = itertools.count()
    executed: list[int] = []

    def charge(order: dict[str, Any]) -> dict[str, Any]:
        executed.append(order["id"])
        return {"charged": order["amount"]}

    with mock_aws():
        ddb = boto3.client("dynamodb", region_name=REGION)
        ddb.create_table(
            TableName=TABLE,
            BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        )
        s3 = boto3.client("s3", region_name=REGION)
        bucket = new_bucket(s3, "peer")
        ddb_log = RequestLog().attach(ddb, "dynamodb")
        s3_log = RequestLog().attach(s3)

        config = IdempotencyConfig()
        config.register_lambda_context(_LambdaContext())  # type: ignore[arg-type]
        layer = DynamoDBPersistenceLayer(table_name=TABLE, boto3_client=ddb)

        @idempotent_function(
            data_keyword_argument="order",
            config=config,  # type: ignore[untyped-decorator]
            persistence_store=layer,
        )
        def powertools_charge(order: dict[str, Any]) -> dict[str, Any]:
            return charge(order)

        store = open_store(f"s3://{bucket}/orders", client=s3)
        warm_probe(store)  # once per process, not per call: measured elsewhere

        def eleanor_charge(order: dict[str, Any]) -> Any:
            # One stage whose work is the protected call; the task id is the key.
            return run_task(store, f"order-{order['id']}", ["charge"], work=lambda: charge(order))

        repeat_order = {"id": -1, "amount": 5}
        powertools_charge(order=repeat_order)
        s3_log.clear()
        eleanor_charge(repeat_order)
        # The floor for eleanor's first call on this peer: the same S3 requests, raw.
        trace = s3_log.take()
        raw_s3 = boto3.client("s3", region_name=REGION)
        ddb_log.clear()
        counts: dict[str, list[dict[str, int]]] = {}

        def measured(name: str, call: Any, log: RequestLog, fresh: bool) -> Any:
            def variant() -> None:
                order = {"id": next(calls), "amount": 5} if fresh else repeat_order
                before = len(executed)
                call(order)
                if (len(executed) > before) != fresh:
                    raise RuntimeError(f"{name}: the protected call ran {fresh=}")
                counts.setdefault(name, []).append(by_operation(log.take()))

            return variant

        variants = {
            "powertools first": measured(
                "powertools first", lambda o: powertools_charge(order=o), ddb_log, True
            ),
            "eleanor first": measured("eleanor first", eleanor_charge, s3_log, True),
            "powertools repeat": measured(
                "powertools repeat", lambda o: powertools_charge(order=o), ddb_log, False
            ),
            "eleanor repeat": measured("eleanor repeat", eleanor_charge, s3_log, False),
        }
        refused: list[int] = []

        def raw_replay() -> None:
            refused.append(replay(raw_s3, bucket, trace, "order--1", f"raw-{next(calls)}"))
            counts.setdefault("raw S3 replay of eleanor first", []).append(by_operation(trace))

        variants["raw S3 replay of eleanor first"] = raw_replay
        cpu: dict[str, list[float]] = {}
        times = interleaved(variants, rounds, warmup=1, cpu=cpu)
    rows = []
    for name, t in times.items():
        last = counts[name][-1]
        rows.append(
            {
                "variant": name,
                "requests": sum(last.values()),
                "requests_by_operation": last,
                "request_count_stable": all(c == last for c in counts[name]),
                **summary(t),
                # In-process: moto's CPU is in here too, the same for both sides.
                "cpu_median_ms": round(median(cpu[name]) * 1000, 3),
            }
        )
    return {
        "raw_refused": sum(refused),  # must be 0: the raw loop did what eleanor did
        "peer": "moto in-process (mock_aws): DynamoDB for Powertools, S3 for eleanor_cloud",
        "rounds": rounds,
        "rows": rows,
        "ratios": {
            "first": ratio(median(times["eleanor first"]), median(times["powertools first"])),
            "repeat": ratio(median(times["eleanor repeat"]), median(times["powertools repeat"])),
            "eleanor_first_vs_raw_replay": ratio(
                median(times["eleanor first"]), median(times["raw S3 replay of eleanor first"])
            ),
        },
        "targets": [],
    }


def render(result: dict[str, Any]) -> str:
    rows = [
        [
            r["variant"],
            r["requests"],
            " ".join(f"{k}={v}" for k, v in r["requests_by_operation"].items()),
            r["median_ms"],
            r["p25_ms"],
            r["p75_ms"],
            r["cpu_median_ms"],
        ]
        for r in result["rows"]
    ]
    ratios = result["ratios"]
    return table(
        f"6. peer: Powertools idempotency vs one-stage eleanor_cloud task ({result['peer']}); "
        f"eleanor/powertools median: first {ratios['first']}, repeat {ratios['repeat']}; "
        f"eleanor first / its raw replay {ratios['eleanor_first_vs_raw_replay']}",
        ["variant", "requests", "by operation", "median ms", "p25 ms", "p75 ms", "CPU median ms"],
        rows,
    )
