"""The layer itself: requests per call on S3, keys that stay under the folder, a
backend without conditional delete, corrupt objects, and the extra's import hygiene."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyPersistenceLayerError,
)

import eleanor_cloud as ec
from eleanor_cloud.backends.base import Version, WriteMode
from eleanor_cloud.backends.memory import MemoryBackend
from eleanor_cloud.integrations.powertools import FORMAT, ObjectStorePersistenceLayer
from tests.integrations.powertools.conftest import FakeClock, LambdaContext
from tests.s3.helpers import RequestCounter


def counting_handler(layer: ObjectStorePersistenceLayer, runs: list[Any], **kw: Any) -> Any:
    @idempotent(persistence_store=layer, config=IdempotencyConfig(event_key_jmespath="k"), **kw)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        runs.append(event)
        if event.get("fail"):
            raise ValueError("boom")
        return {"ok": event["k"]}

    return handler


@pytest.mark.parametrize(
    ("read_first", "first", "repeat"),
    [(False, {"PUT": 2}, {"PUT": 1, "GET": 1}), (True, {"GET": 1, "PUT": 2}, {"GET": 1})],
)
def test_requests_per_call_on_s3(
    s3_store: ec.StateStore,
    s3_client: Any,
    clock: FakeClock,
    read_first: bool,
    first: dict[str, int],
    repeat: dict[str, int],
) -> None:
    counter = RequestCounter(s3_client)
    layer = ObjectStorePersistenceLayer(s3_store, clock=clock, read_first=read_first)
    runs: list[Any] = []
    handler = counting_handler(layer, runs)
    counter.clear()
    handler({"k": "a"}, LambdaContext())
    assert dict(counter.calls) == first
    counter.clear()
    handler({"k": "a"}, LambdaContext())
    assert dict(counter.calls) == repeat
    counter.clear()
    with pytest.raises(ValueError, match="boom"):
        handler({"k": "b", "fail": True}, LambdaContext())
    # create (+ GET of nothing with read_first), then the conditional delete
    assert dict(counter.calls) == {**({"GET": 1} if read_first else {}), "PUT": 1, "DELETE": 1}
    assert len(runs) == 2


HOSTILE = ["../../escape", "/abs/olute", ".eleanor-tmp", "a/../../b", "~x#y", "é 漢 %2F", "x" * 400]


@pytest.mark.parametrize("key_prefix", HOSTILE)
def test_keys_stay_under_the_folder(
    store: ec.StateStore, clock: FakeClock, key_prefix: str
) -> None:
    layer = ObjectStorePersistenceLayer(store, clock=clock)
    runs: list[Any] = []
    handler = counting_handler(layer, runs, key_prefix=key_prefix)
    assert handler({"k": "a"}, LambdaContext()) == handler({"k": "a"}, LambdaContext())
    assert len(runs) == 1
    everything = list(store.backend.list(""))
    ours = [k for k in everything if "_probe/" not in k]
    assert len(ours) == 1 and ours[0].startswith(layer.base + "/")
    name = ours[0][len(layer.base) + 1 :]
    assert "/" not in name and not name.startswith(".") and len(name) <= 185


def test_distinct_keys_never_share_an_object() -> None:
    layer = ObjectStorePersistenceLayer("memory://")
    names = ["a#b", "a%23b", "a~b", "a%7Eb", "x" * 300 + "1", "x" * 300 + "2", ".a", "%2Ea"]
    assert len({layer.key_of(n) for n in names}) == len(names)


class NoConditionalDelete(MemoryBackend):
    """A backend like obstore: delete(if_version=...) is NotSupported."""

    def delete(self, key: str, if_version: Version | None = None) -> None:
        if if_version is not None:
            raise ec.NotSupported("conditional delete", self.description)
        super().delete(key)


def test_without_conditional_delete_a_failed_call_leaves_an_expired_record(
    clock: FakeClock,
) -> None:
    layer = ObjectStorePersistenceLayer(ec.StateStore(NoConditionalDelete()), clock=clock)
    runs: list[Any] = []
    handler = counting_handler(layer, runs)
    with pytest.raises(ValueError, match="boom"):
        handler({"k": "a", "fail": True}, LambdaContext())
    (key,) = list(layer.store.backend.list(layer.base + "/"))
    record = layer.store.read_document(key, FORMAT, dict)
    assert record.value["status"] == "EXPIRED" and "cannot delete conditionally" in str(
        record.value["note"]
    )
    assert handler({"k": "a"}, LambdaContext()) == {"ok": "a"}  # the retry runs
    assert len(runs) == 2


def test_a_corrupt_record_is_reported_naming_its_key_and_left_alone(
    store: ec.StateStore, clock: FakeClock
) -> None:
    layer = ObjectStorePersistenceLayer(store, clock=clock)
    runs: list[Any] = []
    handler = counting_handler(layer, runs)
    handler({"k": "a"}, LambdaContext())
    (key,) = list(store.backend.list(layer.base + "/"))
    store.backend.write(key, b"not json", ec.OVERWRITE)
    with pytest.raises(IdempotencyPersistenceLayerError) as caught:
        handler({"k": "a"}, LambdaContext())
    assert isinstance(caught.value.__cause__, ec.CorruptState)
    assert key in str(caught.value.__cause__)
    assert store.backend.read(key)[0] == b"not json"
    assert len(runs) == 1


class _Spy(MemoryBackend):
    def __init__(self) -> None:
        super().__init__()
        self.modes: list[str] = []

    def write(self, key: str, data: bytes, mode: WriteMode) -> Version:
        self.modes.append(str(mode).split("(")[0])
        return super().write(key, data, mode)


def test_completion_is_a_compare_and_swap_of_the_version_written(clock: FakeClock) -> None:
    spy = _Spy()
    layer = ObjectStorePersistenceLayer(ec.StateStore(spy), clock=clock)
    counting_handler(layer, [])({"k": "a"}, LambdaContext())
    assert spy.modes == ["create", "replace"]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ec.InvalidState):
        ObjectStorePersistenceLayer("memory://", max_record_bytes=10)
    with pytest.raises(ec.InvalidKey):
        ObjectStorePersistenceLayer("memory://", folder="../x")
    with pytest.raises(ec.InvalidState):
        ObjectStorePersistenceLayer(ec.open_store("memory://"), endpoint_url="http://x")


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_import_eleanor_cloud_does_not_load_powertools() -> None:
    done = _python(
        "import sys, eleanor_cloud; eleanor_cloud.open_store('memory://'); "
        "print('aws_lambda_powertools' in sys.modules)"
    )
    assert done.stdout.strip() == "False", done.stderr


def test_a_missing_extra_names_the_install() -> None:
    done = _python(
        "import sys; sys.modules['aws_lambda_powertools'] = None\n"
        "from eleanor_cloud.errors import MissingDependency\n"
        "try:\n"
        "    import eleanor_cloud.integrations.powertools\n"
        "except MissingDependency as exc:\n"
        "    print(exc)\n"
    )
    assert "pip install 'eleanor-cloud[powertools]'" in done.stdout, done.stderr


def test_on_obstore_a_failed_call_expires_its_record_and_a_retry_runs(clock: FakeClock) -> None:
    pytest.importorskip("obstore")
    layer = ObjectStorePersistenceLayer("obstore+memory:///idem", clock=clock)
    runs: list[Any] = []
    handler = counting_handler(layer, runs)
    with pytest.raises(ValueError, match="boom"):
        handler({"k": "a", "fail": True}, LambdaContext())
    (key,) = list(layer.store.backend.list(layer.base + "/"))
    assert layer.store.read_document(key, FORMAT, dict).value["status"] == "EXPIRED"
    assert handler({"k": "a"}, LambdaContext()) == handler({"k": "a"}, LambdaContext())
    assert len(runs) == 2
