"""Powertools idempotency: our persistence layer on S3 vs Powertools' DynamoDB layer,
both on one moto HTTP server, in the same run.

Section 6 (``bench_peer``) compares a Powertools-protected call with a one-stage
eleanor_cloud *task*; this one puts our :class:`ObjectStorePersistenceLayer` under the
same ``idempotent_function`` as ``DynamoDBPersistenceLayer`` (same Lambda context stub,
same protected function), so only the persistence layer differs. "first" is a new
idempotency key (the function runs); "repeat" the same key again (the stored result
comes back, the function does not run). Two orders of ours: create-first (the default:
a conditional PUT, then a GET only if it exists) and ``read_first`` (GET, then the PUT
only if absent). Two raw boto3 rows (a refused conditional PUT, a GET) show what the
emulator charges for each request of "s3 repeat". Requests are counted with
``before-send`` hooks on each client; wall time is the median over interleaved rounds.
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
    target,
    warm_probe,
)
from benchmarks.bench_peer import _LambdaContext

TABLE = "bench-powertools-idempotency"
# What each variant must cost (requests per call), as docs/powertools.md says.
EXPECTED = {
    "dynamodb first": 2,
    "dynamodb repeat": 1,
    "s3 first": 2,
    "s3 repeat": 2,
    "s3 read_first first": 3,
    "s3 read_first repeat": 1,
}


def run(rounds: int, url: str) -> dict[str, Any]:
    import boto3
    from aws_lambda_powertools.utilities.idempotency import (
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
        idempotent_function,
    )

    from eleanor_cloud import open_store
    from eleanor_cloud.integrations.powertools import ObjectStorePersistenceLayer

    ddb = boto3.client("dynamodb", endpoint_url=url, region_name=REGION)
    ddb.create_table(
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
    )
    s3 = boto3.client("s3", endpoint_url=url, region_name=REGION)
    bucket = new_bucket(s3, "powertools")
    store = open_store(f"s3://{bucket}/idem", client=s3)
    warm_probe(store)  # once per process, not per call
    logs = {"dynamodb": RequestLog().attach(ddb, "dynamodb"), "s3": RequestLog().attach(s3)}
    layers = {
        "dynamodb": DynamoDBPersistenceLayer(table_name=TABLE, boto3_client=ddb),
        "s3": ObjectStorePersistenceLayer(store),
        "s3 read_first": ObjectStorePersistenceLayer(store, read_first=True),
    }
    executed: list[int] = []
    calls = itertools.count()
    variants: dict[str, Any] = {}
    counts: dict[str, list[dict[str, int]]] = {}
    for label, layer in layers.items():
        config = IdempotencyConfig(event_key_jmespath="id")
        config.register_lambda_context(_LambdaContext())  # type: ignore[arg-type]

        def charge(order: dict[str, Any]) -> dict[str, Any]:
            executed.append(order["id"])
            return {"charged": order["amount"], "currency": "EUR"}

        # Each layer protects its own copy (its own function name, so its own keys).
        charge.__qualname__ = f"charge_{label.replace(' ', '_')}"
        protected = idempotent_function(
            data_keyword_argument="order",
            config=config,  # type: ignore[untyped-decorator]
            persistence_store=layer,
        )(charge)
        log = logs[label.split()[0]]
        repeat_order = {"id": -1, "amount": 5}
        protected(order=repeat_order)
        log.clear()
        for kind, fresh in (("first", True), ("repeat", False)):
            name = f"{label} {kind}"

            def variant(
                name: str = name,
                fresh: bool = fresh,
                call: Any = protected,
                log: Any = log,
                repeat_order: dict[str, int] = repeat_order,
            ) -> None:
                order = {"id": next(calls), "amount": 5} if fresh else repeat_order
                before = len(executed)
                call(order=order)
                if (len(executed) > before) != fresh:
                    raise RuntimeError(f"{name}: the protected call ran {fresh=}")
                counts.setdefault(name, []).append(by_operation(log.take()))

            variants[name] = variant
    # The two requests of "s3 repeat", raw: how much of it is moto's 412 path.
    raw = boto3.client("s3", endpoint_url=url, region_name=REGION)
    raw.put_object(Bucket=bucket, Key="raw/exists.json", Body=b"{}")

    def raw_refused_create() -> None:
        try:
            raw.put_object(Bucket=bucket, Key="raw/exists.json", Body=b"{}", IfNoneMatch="*")
        except raw.exceptions.ClientError as exc:
            if exc.response["Error"]["Code"] != "PreconditionFailed":
                raise
        else:
            raise RuntimeError("the conditional PUT of an existing key was not refused")
        counts.setdefault("raw S3 PutObject refused (412)", []).append({"PutObject": 1})

    def raw_get() -> None:
        raw.get_object(Bucket=bucket, Key="raw/exists.json")["Body"].read()
        counts.setdefault("raw S3 GetObject", []).append({"GetObject": 1})

    variants["raw S3 PutObject refused (412)"] = raw_refused_create
    variants["raw S3 GetObject"] = raw_get
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
                # The moto server runs in its own process: this is the client side only.
                "cpu_median_ms": round(median(cpu[name]) * 1000, 3),
            }
        )
    by_name = {r["variant"]: r for r in rows}
    return {
        "peer": "moto HTTP server (one process, both services)",
        "rounds": rounds,
        "rows": rows,
        "ratios": {
            kind: ratio(median(times[f"s3 {kind}"]), median(times[f"dynamodb {kind}"]))
            for kind in ("first", "repeat")
        },
        "targets": [
            target(
                f"powertools: {name} requests",
                f"== {want}",
                by_name[name]["requests"],
                by_name[name]["requests"] == want and by_name[name]["request_count_stable"],
            )
            for name, want in EXPECTED.items()
        ],
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
        f"powertools: idempotency persistence, ours on S3 vs DynamoDBPersistenceLayer "
        f"({result['peer']}); s3/dynamodb median: first {ratios['first']}, "
        f"repeat {ratios['repeat']}",
        ["variant", "requests", "by operation", "median ms", "p25 ms", "p75 ms", "CPU median ms"],
        rows,
    )


if __name__ == "__main__":  # python -m benchmarks.bench_powertools [rounds]
    import sys

    from benchmarks._util import fake_aws_env, moto_server

    fake_aws_env()
    with moto_server() as endpoint:
        print(render(run(int(sys.argv[1]) if len(sys.argv) > 1 else 50, endpoint)))
