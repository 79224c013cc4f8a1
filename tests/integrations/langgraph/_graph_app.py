"""A small LangGraph app run in subprocesses by the tests: plan -> approve -> act.

``approve`` calls ``interrupt()`` (a human answers later, from any process) and ``act``
can crash its process mid-run (``CRASH_IN_ACT=1``: ``os._exit``, no cleanup). The store
is S3 on the moto server (``MOTO_ENDPOINT``, ``BUCKET``). With ``SYNC_PORT`` set, the
resumed ``approve`` reports to the test's barrier and waits for its go, so two
processes are both past loading the thread before either saves (a real race, no sleep).

    python -m tests.integrations.langgraph._graph_app start THREAD
    python -m tests.integrations.langgraph._graph_app resume THREAD ANSWER
    python -m tests.integrations.langgraph._graph_app continue THREAD

Prints one JSON line: ``{"status": "interrupted" | "done" | "conflict", ...}``.
"""

from __future__ import annotations

import json
import operator
import os
import socket
import sys
from typing import Annotated, Any, TypedDict

import boto3
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

import eleanor_cloud as ec
from eleanor_cloud.integrations.langgraph import CheckpointConflict, ObjectStoreSaver


class State(TypedDict, total=False):
    topic: str
    plan: str
    answer: str
    ran: Annotated[list[str], operator.add]


def plan(state: State) -> State:
    return {"plan": f"write about {state['topic']}", "ran": ["plan"]}


def approve(state: State) -> State:
    answer = interrupt({"question": f"approve {state['plan']!r}?"})
    port = os.environ.get("SYNC_PORT")
    if port:
        with socket.create_connection(("127.0.0.1", int(port)), timeout=30) as conn:
            conn.sendall(b"ready\n")
            conn.recv(16)  # the test answers once every process is here
    return {"answer": str(answer), "ran": ["approve"]}


def act(state: State) -> State:
    if os.environ.get("CRASH_IN_ACT") == "1":
        sys.stdout.flush()
        os._exit(9)
    return {"ran": ["act"]}


def build(saver: ObjectStoreSaver) -> Any:
    builder = StateGraph(State)
    builder.add_node("plan", plan)
    builder.add_node("approve", approve)
    builder.add_node("act", act)
    builder.add_edge(START, "plan")
    builder.add_edge("plan", "approve")
    builder.add_edge("approve", "act")
    builder.add_edge("act", END)
    return builder.compile(checkpointer=saver)


def main(argv: list[str]) -> int:
    command, thread_id = argv[0], argv[1]
    client = boto3.client("s3", endpoint_url=os.environ["MOTO_ENDPOINT"], region_name="us-east-1")
    store = ec.open_store(f"s3://{os.environ['BUCKET']}/agents", client=client)
    graph = build(ObjectStoreSaver(store))
    config = {"configurable": {"thread_id": thread_id}}
    inputs: Any = {
        "start": {"topic": "object stores", "ran": []},
        "resume": Command(resume=argv[2] if len(argv) > 2 else None),
        "continue": None,
    }[command]
    try:
        result = graph.invoke(inputs, config, durability="sync")
    except CheckpointConflict as exc:
        print(json.dumps({"status": "conflict", "message": str(exc), "current": exc.current}))
        return 3
    if "__interrupt__" in result:
        questions = [i.value for i in result["__interrupt__"]]
        print(json.dumps({"status": "interrupted", "interrupts": questions}))
        return 0
    print(json.dumps({"status": "done", "state": result}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
