"""Powertools' own public behaviour (``@idempotent``, ``idempotent_function``) on our layer,
on S3 over HTTP (moto), memory:// and a local directory."""

from __future__ import annotations

from typing import Any

import pytest
from aws_lambda_powertools.utilities.idempotency import (
    IdempotencyConfig,
    idempotent,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyPersistenceLayerError,
    IdempotencyValidationError,
)

from eleanor_cloud.integrations.powertools import ObjectStorePersistenceLayer, RecordTooLarge
from tests.integrations.powertools.conftest import FakeClock, LambdaContext


class Crash(BaseException):
    """A Lambda killed mid-call: Powertools catches Exception only, so the record stays."""


def make_handler(
    layer: ObjectStorePersistenceLayer, config: IdempotencyConfig, runs: list[Any], **kw: Any
) -> Any:
    @idempotent(persistence_store=layer, config=config, **kw)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        runs.append(event)
        if event.get("fail"):
            raise ValueError("boom")
        if event.get("crash"):
            raise Crash
        return {"status": 200, "body": f"charged {event['amount']}"}

    return handler


def test_a_repeated_call_returns_the_stored_result(layer: ObjectStorePersistenceLayer) -> None:
    runs: list[Any] = []
    handler = make_handler(layer, IdempotencyConfig(event_key_jmespath="order"), runs)
    first = handler({"order": "o-1", "amount": 5}, LambdaContext())
    again = handler({"order": "o-1", "amount": 7}, LambdaContext())  # same key
    other = handler({"order": "o-2", "amount": 9}, LambdaContext())
    assert first == again == {"status": 200, "body": "charged 5"}
    assert other == {"status": 200, "body": "charged 9"}
    assert len(runs) == 2


def test_idempotent_function_with_a_data_keyword_argument(
    layer: ObjectStorePersistenceLayer,
) -> None:
    runs: list[str] = []
    config = IdempotencyConfig(event_key_jmespath="id")
    config.register_lambda_context(LambdaContext())  # type: ignore[arg-type]

    @idempotent_function(  # type: ignore[untyped-decorator]
        data_keyword_argument="order", persistence_store=layer, config=config
    )
    def charge(order: dict[str, Any], note: str) -> dict[str, Any]:
        runs.append(order["id"])
        return {"charged": order["amount"], "note": note}

    assert charge(order={"id": "a", "amount": 3}, note="x") == {"charged": 3, "note": "x"}
    assert charge(order={"id": "a", "amount": 3}, note="y") == {"charged": 3, "note": "x"}
    assert runs == ["a"]


def test_an_expired_record_runs_again(layer: ObjectStorePersistenceLayer, clock: FakeClock) -> None:
    runs: list[Any] = []
    config = IdempotencyConfig(event_key_jmespath="order", expires_after_seconds=60)
    handler = make_handler(layer, config, runs)
    handler({"order": "o-1", "amount": 5}, LambdaContext())
    clock.advance(60)  # expiry is "before now", in whole seconds: not yet
    handler({"order": "o-1", "amount": 5}, LambdaContext())
    assert len(runs) == 1
    clock.advance(1.5)
    assert handler({"order": "o-1", "amount": 6}, LambdaContext()) == {
        "status": 200,
        "body": "charged 6",
    }
    assert len(runs) == 2
    handler({"order": "o-1", "amount": 7}, LambdaContext())  # the new record holds
    assert len(runs) == 2


def test_a_failing_handler_deletes_the_record_so_a_retry_runs(
    layer: ObjectStorePersistenceLayer,
) -> None:
    runs: list[Any] = []
    handler = make_handler(layer, IdempotencyConfig(event_key_jmespath="order"), runs)
    with pytest.raises(ValueError, match="boom"):
        handler({"order": "o-1", "amount": 5, "fail": True}, LambdaContext())
    assert list(layer.store.backend.list(layer.base + "/")) == []
    assert handler({"order": "o-1", "amount": 5}, LambdaContext())["status"] == 200
    assert len(runs) == 2


def test_a_crashed_call_is_in_progress_until_its_lambda_would_have_timed_out(
    layer: ObjectStorePersistenceLayer, clock: FakeClock
) -> None:
    runs: list[Any] = []
    handler = make_handler(layer, IdempotencyConfig(event_key_jmespath="order"), runs)
    with pytest.raises(Crash):
        handler({"order": "o-1", "amount": 5, "crash": True}, LambdaContext(remaining_ms=3_000))
    with pytest.raises(IdempotencyAlreadyInProgressError):
        handler({"order": "o-1", "amount": 5}, LambdaContext())
    clock.advance(3.001)
    assert handler({"order": "o-1", "amount": 5}, LambdaContext())["status"] == 200
    assert len(runs) == 2


def test_a_payload_mismatch_is_powertools_validation_error(
    layer: ObjectStorePersistenceLayer,
) -> None:
    runs: list[Any] = []
    config = IdempotencyConfig(event_key_jmespath="order", payload_validation_jmespath="amount")
    handler = make_handler(layer, config, runs)
    handler({"order": "o-1", "amount": 5}, LambdaContext())
    with pytest.raises(IdempotencyValidationError):
        handler({"order": "o-1", "amount": 6}, LambdaContext())
    assert handler({"order": "o-1", "amount": 5}, LambdaContext())["body"] == "charged 5"
    assert len(runs) == 1


def test_an_oversize_result_is_refused_naming_the_key(store: Any, clock: FakeClock) -> None:
    layer = ObjectStorePersistenceLayer(store, clock=clock, max_record_bytes=2048)

    @idempotent(persistence_store=layer, config=IdempotencyConfig(event_key_jmespath="k"))
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"blob": "x" * 4096}

    with pytest.raises(IdempotencyPersistenceLayerError) as caught:
        handler({"k": "big"}, LambdaContext())
    cause = caught.value.__cause__
    assert isinstance(cause, RecordTooLarge)
    assert "test-func" in str(cause) and "max_record_bytes" in str(cause)
    assert cause.key is not None and cause.key.startswith(layer.base + "/")
    # Left INPROGRESS, as DynamoDB's layer leaves an item it could not update: a retry
    # must not run the (already run) function again before the record expires.
    with pytest.raises(IdempotencyAlreadyInProgressError):
        handler({"k": "big"}, LambdaContext())
