"""LangGraph's published saver suite (langgraph-checkpoint-conformance) on our saver.

Every capability (the five base ones and delete_for_runs, copy_thread, prune) runs in
full on memory://, a local directory, fsspec's LocalFileSystem and S3 over the moto HTTP
server; a failure prints the suite's own test names and messages.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES

import eleanor_cloud as ec
from eleanor_cloud.integrations.langgraph import ObjectStoreSaver


def _run(store: ec.StateStore) -> dict[str, tuple[int, int, list[str]]]:
    async def factory() -> AsyncGenerator[ObjectStoreSaver, None]:
        yield ObjectStoreSaver(store)

    registered = checkpointer_test(name=f"ObjectStoreSaver({store.backend.description})")(factory)
    report = asyncio.run(validate(registered))
    return {
        name: (result.tests_passed, result.tests_failed, result.failures)
        for name, result in report.results.items()
    }


def test_the_published_suite_passes_in_full(store: ec.StateStore) -> None:
    results = _run(store)
    assert set(results) == {c.value for c in ALL_CAPABILITIES}
    failures = {name: r[2] for name, r in results.items() if r[1] or not r[0]}
    assert failures == {}, failures
    passed = sum(r[0] for r in results.values())
    assert passed == 81, results  # every test of the suite (0.0.2): none skipped
