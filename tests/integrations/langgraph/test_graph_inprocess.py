"""Real graphs in one process: subgraphs (their namespaces become keys), the async API,
time travel (a fork from an older checkpoint), and two runs of one saver racing."""

from __future__ import annotations

import asyncio
import operator
import threading
from typing import Annotated, Any, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

import eleanor_cloud as ec
from eleanor_cloud.integrations.langgraph import CheckpointConflict, ObjectStoreSaver
from eleanor_cloud.integrations.langgraph._head import MARKER


class State(TypedDict, total=False):
    ran: Annotated[list[str], operator.add]
    answer: str


def _sub() -> Any:
    builder = StateGraph(State)
    builder.add_node("ask", lambda s: {"answer": str(interrupt("sub?")), "ran": ["ask"]})
    builder.add_edge(START, "ask")
    builder.add_edge("ask", END)
    return builder.compile()


def _graph(saver: Any) -> Any:
    builder = StateGraph(State)
    builder.add_node("first", lambda s: {"ran": ["first"]})
    builder.add_node("sub", _sub())
    builder.add_node("last", lambda s: {"ran": ["last"]})
    builder.add_edge(START, "first")
    builder.add_edge("first", "sub")
    builder.add_edge("sub", "last")
    builder.add_edge("last", END)
    return builder.compile(checkpointer=saver)


def _with_langgraphs_own_saver(answer: str) -> dict[str, Any]:
    """What the same two invocations return with LangGraph's InMemorySaver."""
    from langgraph.checkpoint.memory import InMemorySaver

    graph = _graph(InMemorySaver())
    config: Any = {"configurable": {"thread_id": "reference"}}
    graph.invoke({"ran": []}, config)
    done: dict[str, Any] = graph.invoke(Command(resume=answer), config)
    return done


def test_an_interrupt_inside_a_subgraph_resumes_with_a_new_saver(store: ec.StateStore) -> None:
    config: Any = {"configurable": {"thread_id": "t/sub"}}
    out = _graph(ObjectStoreSaver(store)).invoke({"ran": []}, config, durability="sync")
    assert [i.value for i in out["__interrupt__"]] == ["sub?"]
    saver = ObjectStoreSaver(store)  # another process's saver
    namespaces = {
        p.checkpoint_ns
        for k in store.backend.list(saver.layout.root + "/")
        if (p := saver.layout.parse(k)) is not None
    }
    assert "" in namespaces and any(ns.startswith("sub:") for ns in namespaces)
    done = _graph(saver).invoke(Command(resume="ok"), config, durability="sync")
    assert done == _with_langgraphs_own_saver("ok")
    for t in saver.list(config):
        assert MARKER not in t.metadata  # the load marker never reaches metadata


def test_the_async_api_runs_a_graph_and_resumes_it(store: ec.StateStore) -> None:
    config: Any = {"configurable": {"thread_id": "t-async"}}

    async def scenario() -> dict[str, Any]:
        await _graph(ObjectStoreSaver(store)).ainvoke({"ran": []}, config, durability="sync")
        resumed: dict[str, Any] = await _graph(ObjectStoreSaver(store)).ainvoke(
            Command(resume="async"), config, durability="sync"
        )
        return resumed

    done = asyncio.run(scenario())
    assert done == _with_langgraphs_own_saver("async")


def _time_travel(checkpointer: Any) -> tuple[Any, int]:
    graph = _graph(checkpointer)
    config: Any = {"configurable": {"thread_id": "t-tt"}}
    graph.invoke({"ran": []}, config, durability="sync")
    graph.invoke(Command(resume="first answer"), config, durability="sync")
    history = list(graph.get_state_history(config))
    first_step = next(s for s in history if s.next == ("first",))
    graph.invoke(None, first_step.config, durability="sync")  # replay: a fork from there
    return graph.get_state(config).values, len(list(graph.get_state_history(config)))


def test_time_travel_from_an_older_checkpoint_forks_as_with_langgraphs_saver() -> None:
    from langgraph.checkpoint.memory import InMemorySaver

    ours = _time_travel(ObjectStoreSaver(ec.open_store("memory://")))
    assert ours == _time_travel(InMemorySaver())
    assert ours[0]["ran"] == ["first"]  # the fork re-ran `first`, then stopped at the interrupt


def _approval(saver: ObjectStoreSaver, gate: threading.Barrier) -> Any:
    def approve(state: State) -> State:
        answer = str(interrupt("approve?"))
        gate.wait(timeout=10)  # both runs have loaded the thread before either saves
        return {"answer": answer, "ran": ["approve"]}

    builder = StateGraph(State)
    builder.add_node("approve", approve)
    builder.add_edge(START, "approve")
    builder.add_edge("approve", END)
    return builder.compile(checkpointer=saver)


@pytest.mark.parametrize("durability", ["sync", "async", "exit"])
def test_two_runs_of_one_saver_resuming_one_thread_one_conflicts(durability: str) -> None:
    saver = ObjectStoreSaver(ec.open_store("memory://"))
    gate = threading.Barrier(2)
    graph = _approval(saver, gate)
    config: Any = {"configurable": {"thread_id": "t-race"}}
    graph.invoke({"ran": []}, config, durability="sync")
    results: dict[str, Any] = {}

    def resume(answer: str) -> None:
        try:
            results[answer] = graph.invoke(Command(resume=answer), config, durability=durability)
        except CheckpointConflict as exc:
            results[answer] = exc

    threads = [threading.Thread(target=resume, args=(a,)) for a in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    conflicts = [a for a, r in results.items() if isinstance(r, CheckpointConflict)]
    winners = [a for a, r in results.items() if isinstance(r, dict)]
    assert len(conflicts) == 1 and len(winners) == 1, results
    assert graph.get_state(config).values["answer"] == winners[0]


@pytest.mark.parametrize("durability", ["sync", "async", "exit"])
def test_every_durability_mode_saves_a_resumable_thread(durability: str) -> None:
    store = ec.open_store("memory://")
    config: Any = {"configurable": {"thread_id": f"t-{durability}"}}
    _graph(ObjectStoreSaver(store)).invoke({"ran": []}, config, durability=durability)
    done = _graph(ObjectStoreSaver(store)).invoke(
        Command(resume="x"), config, durability=durability
    )
    assert done == _with_langgraphs_own_saver("x")
