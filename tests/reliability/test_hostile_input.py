"""Scenario 5 — hostile input: generated task ids, stage names, state payloads and raw
object bytes thrown at the store and the engine.

Every call either works or raises an ``EleanorError`` subclass that names the key (or
the field) concerned; a backend wrapper records every key touched and no key may fall
outside ``<prefix>/``; an invalid name causes no I/O at all; a corrupt object is never
overwritten (its bytes, and every other stage object's, are unchanged afterwards).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import Field

from eleanor_cloud.backends.base import OVERWRITE, Version, WriteMode
from eleanor_cloud.backends.memory import MemoryBackend
from eleanor_cloud.engine import TaskEngine, cancel_task, task_status
from eleanor_cloud.errors import (
    CorruptState,
    EleanorError,
    InvalidKey,
    InvalidState,
    NotFound,
)
from eleanor_cloud.models import StageStatus
from eleanor_cloud.store import StateStore
from tests.reliability.conftest import size
from tests.reliability.harness import PREFIX, RelResult, RelState, make_stages

EXAMPLES = {  # 10,500 in the full campaign, 500 in make test
    "names": size(120, 2500),
    "payloads": size(120, 2500),
    "stage_bytes": size(160, 4000),
    "other_bytes": size(100, 1500),
}
COUNTS: dict[str, int] = {}


class HostileState(RelState):
    """A state with free-form user fields for generated payloads."""

    ratio: float = 0.0
    data: dict[str, Any] = Field(default_factory=dict)
    items: list[Any] = Field(default_factory=list)


class KeyRecorder:
    """Records every key (and listing prefix) the store asks the backend for."""

    def __init__(self, inner: MemoryBackend) -> None:
        self.inner = inner
        self.keys: list[str] = []

    @property
    def description(self) -> str:
        return self.inner.description

    def read(self, key: str) -> tuple[bytes, Version]:
        self.keys.append(key)
        return self.inner.read(key)

    def write(self, key: str, data: bytes, mode: WriteMode) -> Version:
        self.keys.append(key)
        return self.inner.write(key, data, mode)

    def delete(self, key: str, if_version: Version | None = None) -> None:
        self.keys.append(key)
        self.inner.delete(key, if_version)

    def list(self, prefix: str, delimiter: str | None = None) -> Iterator[str]:
        self.keys.append(prefix)
        return self.inner.list(prefix, delimiter)

    def outside(self) -> list[str]:
        return [k for k in self.keys if not k.startswith(PREFIX + "/")]


def hostile_settings(name: str) -> settings:
    return settings(
        max_examples=EXAMPLES[name],
        deadline=None,
        database=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
        ],
    )


def count(name: str) -> None:
    COUNTS[name] = COUNTS.get(name, 0) + 1


# -- names -----------------------------------------------------------------------------

segment_chars = st.sampled_from(list("abcXYZ019._-/\\ \x00:?*%~\u00e9\u202e\ud7ff"))
names = st.one_of(
    st.text(segment_chars, max_size=12),
    st.text(max_size=20),
    st.sampled_from(
        [
            "..",
            ".",
            "_lease",
            "_task",
            "a/../b",
            "/abs",
            "a//b",
            "-",
            "x" * 151,
            "x" * 201,
            ".hidden",
            "ok",
            "a.json",
            "../../etc/passwd",
            "\u00e9t\u00e9",
        ]
    ),
    st.text(st.characters(codec="utf-8"), min_size=140, max_size=260),
)


@given(task_id=names, stage=names)
@hostile_settings("names")
def test_any_task_id_or_stage_name_stays_inside_the_prefix(task_id: str, stage: str) -> None:
    count("names")
    backend = KeyRecorder(MemoryBackend())
    store = StateStore(backend, PREFIX)
    calls: list[Callable[[], Any]] = [
        # model_construct: no pydantic check first, so the store's own checks are tested.
        lambda: store.create(RelState.model_construct(task_id=task_id, stage_name=stage)),
        lambda: store.load(task_id, stage, RelState),
        lambda: store.load_task(task_id, RelState),
        lambda: store.load_lease(task_id),
        lambda: store.load_manifest(task_id),
        lambda: store.delete(task_id, stage),
        lambda: store.delete_task(task_id),
        lambda: TaskEngine(task_id, make_stages(1, _nowhere()), RelState, store),
    ]
    for call in calls:
        before = len(backend.keys)
        try:
            call()
        except (InvalidKey, InvalidState) as exc:
            # Refused before any I/O, with the offending field named.
            assert len(backend.keys) == before, f"I/O before refusing: {exc}"
            assert isinstance(exc, EleanorError)
            assert str(exc)
        except NotFound as exc:
            assert exc.key is not None and exc.key.startswith(PREFIX + "/")
    assert backend.outside() == []
    with pytest.raises(InvalidKey):
        store.create(RelState.model_construct(task_id=task_id + "/..", stage_name=stage))


def _nowhere() -> Any:
    from pathlib import Path

    return Path(os.devnull)


# -- state payloads --------------------------------------------------------------------

json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(), st.binary(max_size=8)
)
json_like = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(
    note=st.text(),
    ratio=st.floats(),
    data=st.dictionaries(st.text(max_size=8), json_like, max_size=4),
    items=st.lists(json_like, max_size=4),
    index=st.integers(),
)
@hostile_settings("payloads")
# Regressions found by this campaign: each escaped as a foreign error or was stored changed.
@example(note="\ud800", ratio=0.0, data={}, items=[], index=0)  # UnicodeEncodeError
@example(note="", ratio=float("inf"), data={}, items=[], index=0)  # bare ValueError
@example(note="", ratio=0.0, data={"a": float("nan")}, items=[], index=0)  # NaN became null
@example(note="", ratio=0.0, data={}, items=[b"\x80"], index=0)  # UnicodeDecodeError
@example(note="", ratio=0.0, data={}, items=[b""], index=0)  # bytes became str
@example(note="", ratio=0.0, data={"\ud800": 1}, items=[], index=0)  # key replaced
def test_any_state_payload_round_trips_or_is_refused(
    note: str, ratio: float, data: dict[str, Any], items: list[Any], index: int
) -> None:
    """A state is stored exactly (it reads back equal) or refused with InvalidState
    before any write; it is never stored changed, nor refused with a foreign error."""
    count("payloads")
    backend = KeyRecorder(MemoryBackend())
    store = StateStore(backend, PREFIX)
    try:
        state = HostileState(
            task_id="t",
            stage_name="s",
            note=note,
            ratio=ratio,
            data=data,
            items=items,
            result=RelResult(index=index, pid=1, attempt=1),
        )
    except ValueError:
        return  # pydantic refused it on construction: nothing reaches the store
    try:
        store.create(state)  # a fresh backend per example: nothing to replace
    except InvalidState as exc:
        with pytest.raises(NotFound):  # refused before writing anything
            backend.inner.read(f"{PREFIX}/t/s.json")
        assert "t/s" in str(exc)
        return
    back = store.load("t", "s", HostileState)
    assert back.model_dump(mode="json") == state.model_dump(mode="json")
    assert back == state or _has_nan(state), "the store changed the state silently"
    assert backend.outside() == []


def _has_nan(state: HostileState) -> bool:
    text = repr(state.model_dump())
    return "nan" in text


# -- raw object bytes --------------------------------------------------------------------


def _valid_stage_bytes(note: str = "hello") -> bytes:
    backend = MemoryBackend()
    store = StateStore(backend, PREFIX)
    store.create(
        RelState(
            task_id="t",
            stage_name="s01",
            status=StageStatus.COMPLETE,
            note=note,
            result=RelResult(index=1, pid=1, attempt=1),
        )
    )
    return backend.read(f"{PREFIX}/t/s01.json")[0]


VALID = _valid_stage_bytes()
VALID_DOC = json.loads(VALID)

raw_bytes = st.one_of(
    st.binary(max_size=300),
    st.integers(0, len(VALID) - 1).map(lambda n: VALID[:n]),  # truncated
    st.sampled_from(
        [
            json.dumps(dict(VALID_DOC, format=f)).encode()
            for f in (
                "eleanor.stage-state/2",
                "eleanor.stage-state/0",
                "eleanor.lease/1",
                "",
                None,
                1,
            )
        ]
    ),  # wrong format version
    st.from_regex(r"\A[\[\]{}\",:0-9a-z ]{0,40}\Z", fullmatch=True).map(str.encode),
    json_like.map(lambda v: json.dumps(v, default=repr).encode()),  # valid JSON, wrong shape
    st.dictionaries(st.sampled_from(list(VALID_DOC)), json_like, max_size=7).map(
        lambda d: json.dumps(dict(VALID_DOC, **d), default=repr).encode()
    ),
    st.dictionaries(st.sampled_from(list(VALID_DOC["state"])), json_like, max_size=4).map(
        lambda d: json.dumps(
            dict(VALID_DOC, state=dict(VALID_DOC["state"], **d)), default=repr
        ).encode()
    ),
    st.sampled_from(
        [
            b"\xef\xbb\xbf" + VALID,  # BOM
            b"[" * 100_000 + b"]" * 100_000,  # nested too deep
            b'{"revision": 1' + b"0" * 5000 + b"}",  # int beyond 4300 digits
            VALID.replace(b'"revision": 1', b'"revision": NaN'),
            VALID.replace(b'"note": "hello"', b'"note": "' + b"x" * 3_000_000 + b'"'),  # huge
            os.urandom(2_000_000),  # huge garbage
        ]
    ),
)


def _setup_task(store: StateStore) -> TaskEngine[RelState]:
    """Bind the task with one engine; return another (the objects appear in between)."""
    TaskEngine("t", make_stages(3, _nowhere()), RelState, store).bind()
    return TaskEngine("t", make_stages(3, _nowhere()), RelState, store)


@given(data=raw_bytes)
@hostile_settings("stage_bytes")
def test_any_stage_object_bytes_read_back_or_raise_corrupt_state(data: bytes) -> None:
    count("stage_bytes")
    inner = MemoryBackend()
    backend = KeyRecorder(inner)
    store = StateStore(backend, PREFIX)
    engine = _setup_task(store)
    key = f"{PREFIX}/t/s01.json"
    inner.write(key, data, OVERWRITE)
    inner.write(
        f"{PREFIX}/t/s00.json",
        VALID.replace(b"s01", b"s00").replace(b'"index":1', b'"index":0'),
        OVERWRITE,
    )
    snapshot = {k: inner.read(k)[0] for k in inner.list(f"{PREFIX}/t/") if "_lease" not in k}
    operations: list[Callable[[], Any]] = [
        lambda: store.load("t", "s01", RelState),
        lambda: store.load_task("t", RelState),
        engine.run,
        engine.status,
        lambda: cancel_task(store, "t", RelState),
        # Last: the permissive AnyStageState may read what the task's own class cannot.
        lambda: task_status(store, "t"),
    ]
    raised: list[bool] = []
    for operation in operations:
        try:
            operation()
        except CorruptState as exc:
            raised.append(True)
            assert exc.key == key, f"CorruptState names {exc.key!r}, not {key!r}"
            assert key in str(exc)
            assert len(str(exc)) < 2000, "the message must stay one readable line"
        except EleanorError as exc:
            raise AssertionError(f"{operation}: {type(exc).__name__}: {exc}") from exc
        else:
            raised.append(False)
    if any(raised):
        # Nothing overwritten: the corrupt object and its neighbours are as they were.
        now = {k: inner.read(k)[0] for k in inner.list(f"{PREFIX}/t/") if "_lease" not in k}
        assert now == snapshot
        assert all(raised[:-1]), f"typed reads disagree about the object: {raised}"
    assert backend.outside() == []


@given(data=raw_bytes, which=st.sampled_from(["_task.json", "_lease.json"]))
@hostile_settings("other_bytes")
def test_any_manifest_or_lease_bytes_raise_corrupt_state(data: bytes, which: str) -> None:
    count("other_bytes")
    inner = MemoryBackend()
    store = StateStore(KeyRecorder(inner), PREFIX)
    engine = _setup_task(store)
    key = f"{PREFIX}/t/{which}"
    inner.write(key, data, OVERWRITE)
    for operation in (engine.run, lambda: cancel_task(store, "t", RelState)):
        try:
            operation()
        except CorruptState as exc:
            assert exc.key == key and key in str(exc)
        except EleanorError as exc:
            raise AssertionError(f"{type(exc).__name__}: {exc}") from exc
        else:
            raise AssertionError(f"{which} of {len(data)} bytes was accepted")
        assert inner.read(key)[0] == data


def test_hostile_campaign_size(summary: Callable[..., None]) -> None:
    """Runs last in this module: reports how many examples the campaign generated."""
    total = sum(COUNTS.values())
    summary(examples=total, by_kind=COUNTS, failures=0)
    assert total >= sum(EXAMPLES.values()) * 0.9 or not COUNTS
