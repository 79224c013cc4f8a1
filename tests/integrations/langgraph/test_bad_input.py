"""Bad input: hostile ids stay under the prefix, oversized or unserialisable state is
refused whole with the thread/channel named, corrupt objects are named by key."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.base import empty_checkpoint

import eleanor_cloud as ec
from eleanor_cloud.backends.base import OVERWRITE
from eleanor_cloud.integrations.langgraph import (
    CheckpointConflict,
    CheckpointTooLarge,
    ObjectStoreSaver,
    UnserializableValue,
)


def _config(thread_id: str, ns: str = "", parent: str | None = None) -> Any:
    conf: dict[str, Any] = {"thread_id": thread_id, "checkpoint_ns": ns}
    if parent:
        conf["checkpoint_id"] = parent
    return {"configurable": conf}


def _put(saver: ObjectStoreSaver, thread_id: str, ns: str = "", **values: Any) -> Any:
    cp = empty_checkpoint()
    cp["channel_values"] = values
    cp["channel_versions"] = dict.fromkeys(values, 1)
    return saver.put(_config(thread_id, ns), cp, {"source": "input", "step": -1}, {})


def _all_keys(store: ec.StateStore) -> list[str]:
    return list(store.backend.list(""))


HOSTILE = ["a/b", "..", "../../escape", "a/../../b", "/abs", "./x", "=", "%2F..%2F", "ü/ß", " "]


@pytest.mark.parametrize("thread_id", HOSTILE)
def test_hostile_thread_ids_and_namespaces_stay_under_the_prefix(
    store: ec.StateStore, thread_id: str, tmp_path: Path
) -> None:
    saver = ObjectStoreSaver(store)
    stored = _put(saver, thread_id, ns=thread_id, msg="hi")
    saver.put_writes(stored, [("ch", 1)], task_id=thread_id)
    root = saver.layout.root + "/"
    keys = _all_keys(store)
    assert keys and all(k.startswith(root) for k in keys), keys
    assert all(".." not in k.split("/") and "" not in k.split("/") for k in keys), keys
    got = saver.get_tuple(_config(thread_id, thread_id))
    assert got is not None and got.config["configurable"]["thread_id"] == thread_id
    assert got.pending_writes == [(thread_id, "ch", 1)]
    [listed] = list(saver.list(_config(thread_id, thread_id)))
    assert listed.config["configurable"]["checkpoint_ns"] == thread_id
    if store.backend.description.startswith("file://"):
        base = Path(store.backend.description.removeprefix("file://"))
        outside = [p for p in tmp_path.rglob("*") if not p.is_relative_to(base)]
        assert outside == []  # nothing beside the store's own directory
    saver.delete_thread(thread_id)
    assert _all_keys(store) == []


@pytest.mark.parametrize(
    ("thread_id", "rule"),
    [
        ("", "thread_id"),
        ("bad\x00id", "control"),
        ("tab\there", "control"),
        ("esc\x1b[31m", "control"),
        ("x" * 300, "too long"),
    ],
)
def test_unusable_thread_ids_are_refused_before_any_write(thread_id: str, rule: str) -> None:
    store = ec.open_store("memory://")
    saver = ObjectStoreSaver(store)
    with pytest.raises(ec.EleanorError, match=rule):
        _put(saver, thread_id, msg="hi")
    assert _all_keys(store) == []


def test_a_checkpoint_over_the_limit_is_refused_whole_naming_thread_and_checkpoint(
    store: ec.StateStore,
) -> None:
    saver = ObjectStoreSaver(store, max_object_bytes=64 * 1024)
    cp = empty_checkpoint()
    cp["channel_values"] = {"small": "x", "big": "y" * 100_000}
    with pytest.raises(CheckpointTooLarge) as caught:
        saver.put(_config("t-big"), cp, {"step": 1}, {})
    message = str(caught.value)
    assert "'t-big'" in message and cp["id"] in message and "'big'" in message
    assert caught.value.limit == 64 * 1024 and caught.value.size > 100_000
    assert _all_keys(store) == []  # nothing written: no partial checkpoint, no head


def test_the_default_limit_is_4_mib() -> None:
    saver = ObjectStoreSaver(ec.open_store("memory://"))
    assert saver.max_object_bytes == 4 * 1024 * 1024
    with pytest.raises(CheckpointTooLarge, match="t-huge"):
        _put(saver, "t-huge", blob=b"z" * (4 * 1024 * 1024))


def test_oversized_writes_are_refused_naming_the_task() -> None:
    store = ec.open_store("memory://")
    saver = ObjectStoreSaver(store, max_object_bytes=4096)
    stored = _put(saver, "t-w", msg="hi")
    before = _all_keys(store)
    with pytest.raises(CheckpointTooLarge, match="task 'task-9'"):
        saver.put_writes(stored, [("ch", "v" * 10_000)], task_id="task-9")
    assert _all_keys(store) == before


def test_an_unserialisable_channel_value_names_thread_and_channel(store: ec.StateStore) -> None:
    saver = ObjectStoreSaver(store)
    with pytest.raises(UnserializableValue) as caught:
        _put(saver, "t-lock", fine="ok", guard=threading.Lock())
    assert caught.value.thread_id == "t-lock"
    assert "'guard'" in str(caught.value) and "lock" in str(caught.value)
    assert _all_keys(store) == []
    stored = _put(saver, "t-lock", fine="ok")
    with pytest.raises(UnserializableValue, match="'out'"):
        saver.put_writes(stored, [("ok", 1), ("out", lambda: 1)], task_id="t1")


def test_a_corrupt_checkpoint_object_is_named_by_key() -> None:
    store = ec.open_store("memory://")
    saver = ObjectStoreSaver(store)
    stored = _put(saver, "t-c", msg="hi")
    key = saver.layout.checkpoint("t-c", "", stored["configurable"]["checkpoint_id"])
    store.backend.write(key, b"{not json", OVERWRITE)
    with pytest.raises(ec.CorruptState, match="checkpoints/"):
        saver.get_tuple(_config("t-c"))


def test_a_stale_parent_is_a_conflict_and_leaves_nothing_behind() -> None:
    store = ec.open_store("memory://")
    first, second = ObjectStoreSaver(store), ObjectStoreSaver(store)  # two processes
    root = _put(first, "t-s", msg="0")
    loaded = second.get_tuple(_config("t-s"))  # both load the same latest
    assert loaded is not None
    cp1 = empty_checkpoint()
    first.put(root, cp1, {"step": 0}, {})
    cp2 = empty_checkpoint()
    with pytest.raises(CheckpointConflict) as caught:
        second.put(loaded.config, cp2, {"step": 0}, {})
    assert caught.value.current == cp1["id"] and caught.value.thread_id == "t-s"
    ids = [t.checkpoint["id"] for t in first.list(_config("t-s"))]
    assert cp2["id"] not in ids and cp1["id"] in ids
    head = first.get_tuple(_config("t-s"))
    assert head is not None and head.checkpoint["id"] == cp1["id"]


def test_a_second_writer_of_one_checkpoint_id_is_a_conflict() -> None:
    store = ec.open_store("memory://")
    first, second = ObjectStoreSaver(store), ObjectStoreSaver(store)
    cp = empty_checkpoint()
    first.put(_config("t-d"), cp, {"step": 0}, {})
    with pytest.raises(CheckpointConflict, match="already exists"):
        second.put(_config("t-d"), cp, {"step": 0}, {})


def test_loading_an_older_checkpoint_forks_but_two_forks_from_one_load_conflict() -> None:
    store = ec.open_store("memory://")
    saver = ObjectStoreSaver(store)
    first = _put(saver, "t-f", msg="0")
    latest = saver.put(first, empty_checkpoint(), {"step": 1}, {})
    older = saver.get_tuple(first)  # time travel: address the first checkpoint
    assert older is not None
    fork = empty_checkpoint()
    saver.put(older.config, fork, {"step": 1, "source": "fork"}, {})  # allowed
    head = saver.get_tuple(_config("t-f"))
    assert head is not None and head.checkpoint["id"] == fork["id"]
    assert head.parent_config is not None
    assert (
        head.parent_config["configurable"]["checkpoint_id"]
        == first["configurable"]["checkpoint_id"]
    )
    with pytest.raises(CheckpointConflict):  # a second fork from the same load: stale
        saver.put(older.config, empty_checkpoint(), {"step": 1}, {})
    assert latest["configurable"]["checkpoint_id"] != fork["id"]


def test_import_eleanor_cloud_does_not_load_langgraph() -> None:
    code = "import sys, eleanor_cloud; assert 'langgraph' not in sys.modules, 'loaded'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_without_the_extra_the_error_says_what_to_install() -> None:
    code = (
        "import sys; sys.modules['langgraph'] = None\n"
        "from eleanor_cloud.errors import MissingDependency\n"
        "try:\n    import eleanor_cloud.integrations.langgraph\n"
        "except MissingDependency as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert "pip install 'eleanor-cloud[langgraph]'" in out.stdout


class _LostAnswers:
    """A backend whose conditional writes of heads land but answer as refused, as a
    retried request whose first answer was lost does (the first attempt succeeded)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.description = inner.description
        self.lost = 0

    def read(self, key: str) -> Any:
        return self.inner.read(key)

    def write(self, key: str, data: bytes, mode: Any) -> Any:
        version = self.inner.write(key, data, mode)
        if key.endswith("/head.json") and str(mode) != "overwrite":
            self.lost += 1
            if str(mode) == "create":
                raise ec.AlreadyExists(f"{key} exists", key=key)
            raise ec.Conflict(f"{key} changed", key=key)
        return version

    def delete(self, key: str, if_version: Any = None) -> None:
        self.inner.delete(key, if_version)

    def list(self, prefix: str, delimiter: str | None = None) -> Any:
        return self.inner.list(prefix, delimiter)


def test_a_head_write_whose_answer_was_lost_is_recognised_as_ours() -> None:
    backend = _LostAnswers(ec.open_store("memory://").backend)
    saver = ObjectStoreSaver(ec.open_store(backend))
    first = _put(saver, "t-lost", msg="0")  # create: landed, answered AlreadyExists
    second = empty_checkpoint()
    saver.put(first, second, {"step": 0}, {})  # swap: landed, answered Conflict
    assert backend.lost == 2
    head = saver.get_tuple(_config("t-lost"))
    assert head is not None and head.checkpoint["id"] == second["id"]
