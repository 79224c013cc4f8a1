"""LangGraph: requests and wall time per super-step of our checkpoint saver, in one run.

A chain graph of ``steps`` nodes (one super-step each, a counter and a growing list in
its state) runs on a new thread per round with ``durability="sync"`` (each checkpoint
saved before the next step starts, the setting that makes resumption exact). Variants:
our :class:`ObjectStoreSaver` on S3 (the moto HTTP server, requests counted with a
``before-send`` hook on its boto3 client), the same saver on ``memory://`` (our CPU
cost without a network), and LangGraph's own ``InMemorySaver`` (the floor: no storage
at all). Then an interrupted thread resumed by a fresh saver, as another process
would: what loading it costs.

The community S3 saver (``langgraph-checkpoint-s3`` 0.1.3, the version on PyPI) is not
measured: installing it downgrades boto3/botocore (1.43 -> 1.40.61, via aioboto3),
which the dev group pins for s3fs.
"""

from __future__ import annotations

import itertools
import operator
from typing import Annotated, Any, TypedDict

from benchmarks._util import (
    REGION,
    RequestLog,
    by_operation,
    interleaved,
    new_bucket,
    summary,
    table,
    warm_probe,
)


class _State(TypedDict, total=False):
    count: int
    log: Annotated[list[str], operator.add]
    answer: str


def _chain(steps: int, checkpointer: Any, *, interrupt_at: int | None = None) -> Any:
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import interrupt

    builder = StateGraph(_State)
    names = [f"n{i}" for i in range(steps)]
    for i, name in enumerate(names):

        def node(state: _State, i: int = i, name: str = name) -> _State:
            if interrupt_at == i:
                return {"answer": str(interrupt("go?")), "log": [name]}
            return {"count": state.get("count", 0) + 1, "log": [name]}

        builder.add_node(name, node)
    for a, b in zip([START, *names], [*names, END], strict=True):
        builder.add_edge(a, b)
    return builder.compile(checkpointer=checkpointer)


def _kinds(requests: list[Any]) -> dict[str, int]:
    """Requests by the saver's object kind (head, checkpoint, writes, list)."""
    out: dict[str, int] = {}
    for r in requests:
        kind = (
            "list"
            if r.operation == "ListObjectsV2"
            else "head"
            if r.key.endswith("/head.json")
            else "checkpoint"
            if "/checkpoints/" in r.key
            else "writes"
            if "/writes/" in r.key
            else "other"
        )
        name = f"{kind} {r.operation.removesuffix('Object').lower()}"
        out[name] = out.get(name, 0) + 1
    return dict(sorted(out.items()))


def run(rounds: int, url: str, steps: int = 5) -> dict[str, Any]:
    import boto3
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.types import Command

    from eleanor_cloud import open_store
    from eleanor_cloud.integrations.langgraph import ObjectStoreSaver

    s3 = boto3.client("s3", endpoint_url=url, region_name=REGION)
    bucket = new_bucket(s3, "langgraph")
    store = open_store(f"s3://{bucket}/agents", client=s3)
    warm_probe(store)
    log = RequestLog().attach(s3)
    graphs = {
        "ours s3": _chain(steps, ObjectStoreSaver(store)),
        "ours memory://": _chain(steps, ObjectStoreSaver(open_store("memory://"))),
        "InMemorySaver": _chain(steps, InMemorySaver()),
    }
    threads = itertools.count()

    def invoke(graph: Any) -> Any:
        config = {"configurable": {"thread_id": f"t{next(threads)}"}}
        return graph.invoke({"count": 0, "log": []}, config, durability="sync")

    # Requests of one whole run on a new thread (S3): exact, from one counted round.
    log.clear()
    invoke(graphs["ours s3"])
    fresh = log.take()
    # One checkpoint per super-step: the input (step -1), __start__, then one per node.
    supersteps = _kinds(fresh).get("checkpoint put", 0)
    times = interleaved({n: (lambda g=g: invoke(g)) for n, g in graphs.items()}, rounds)
    rows = [
        {"variant": name, "per_run": summary(t), "per_step_ms": summary(t)["median_ms"] / steps}
        for name, t in times.items()
    ]
    # An interrupted thread resumed by a fresh saver (a new process's view).
    interrupted = _chain(steps, ObjectStoreSaver(store), interrupt_at=steps - 1)
    config = {"configurable": {"thread_id": "resume-me"}}
    interrupted.invoke({"count": 0, "log": []}, config, durability="sync")
    resumer = _chain(steps, ObjectStoreSaver(store), interrupt_at=steps - 1)
    log.clear()
    resumer.invoke(Command(resume="yes"), config, durability="sync")
    resumed = log.take()
    log.detach(s3)
    return {
        "steps": steps,
        "rounds": rounds,
        "fresh_run": {
            "requests": len(fresh),
            "by_operation": by_operation(fresh),
            "by_object": _kinds(fresh),
            "supersteps": supersteps,
            "requests_per_superstep": round(len(fresh) / supersteps, 2),
        },
        "resume": {
            "requests": len(resumed),
            "by_operation": by_operation(resumed),
            "by_object": _kinds(resumed),
        },
        "rows": rows,
        "peer": "langgraph-checkpoint-s3 not measured: its install downgrades boto3/botocore",
    }


def render(result: dict[str, Any]) -> str:
    fresh, resumed = result["fresh_run"], result["resume"]
    counts = table(
        f"langgraph: requests of ObjectStoreSaver on S3 (moto HTTP), {result['steps']}-node "
        f"chain, durability=sync; {result['peer']}",
        ["what", "requests", "by operation", "by object", "per super-step"],
        [
            [
                f"new thread, {fresh['supersteps']} super-steps",
                fresh["requests"],
                " ".join(f"{k}={v}" for k, v in fresh["by_operation"].items()),
                ", ".join(f"{k} {v}" for k, v in fresh["by_object"].items()),
                fresh["requests_per_superstep"],
            ],
            [
                "resume an interrupt (fresh saver), last node",
                resumed["requests"],
                " ".join(f"{k}={v}" for k, v in resumed["by_operation"].items()),
                ", ".join(f"{k} {v}" for k, v in resumed["by_object"].items()),
                "-",
            ],
        ],
    )
    times = table(
        f"langgraph: wall time per run of the chain ({result['rounds']} interleaved rounds)",
        ["variant", "median ms", "p25 ms", "p75 ms", "median ms per node"],
        [
            [
                r["variant"],
                r["per_run"]["median_ms"],
                r["per_run"]["p25_ms"],
                r["per_run"]["p75_ms"],
                round(r["per_step_ms"], 3),
            ]
            for r in result["rows"]
        ],
    )
    return counts + "\n" + times


if __name__ == "__main__":  # python -m benchmarks.bench_langgraph [rounds]
    import sys

    from benchmarks._util import fake_aws_env, moto_server

    fake_aws_env()
    with moto_server() as endpoint:
        print(render(run(int(sys.argv[1]) if len(sys.argv) > 1 else 20, endpoint)))
