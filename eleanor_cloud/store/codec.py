"""Typed values <-> envelope bodies: the checks that run before any byte leaves the process.

Kept apart from :mod:`.state_store` (which owns I/O) so every rule about what may be
stored, and how a stored body is judged corrupt, lives in one small place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError

from eleanor_cloud import keys
from eleanor_cloud.backends.base import Version
from eleanor_cloud.errors import CorruptState, InvalidState, first_error
from eleanor_cloud.models import BaseStageState
from eleanor_cloud.store.envelope import decode
from eleanor_cloud.store.records import Record

__all__ = ["decode_record", "stage_body", "stage_parser"]

# A string bound: subscripting a pydantic generic at import time builds a model class.
S = TypeVar("S", bound="BaseStageState[Any]")
M = TypeVar("M", bound=BaseModel)


def decode_record(
    key: str, data: bytes, version: Version, fmt: str, parse: Callable[[dict[str, Any]], M]
) -> Record[M]:
    """Bytes read at ``key`` -> a typed record; anything unexpected is ``CorruptState``."""
    env = decode(data, key=key, expected_format=fmt)
    try:
        value = parse(env.body)
    except CorruptState as exc:
        if exc.key is not None:
            raise
        raise CorruptState(
            f"corrupt object at {key!r}: {exc}", key=key, operation="decode"
        ) from exc
    except ValidationError as exc:
        raise CorruptState(
            f"corrupt object at {key!r}: {first_error(exc)} "
            f"({exc.error_count()} validation error(s))",
            key=key,
            operation="decode",
        ) from exc
    return Record(
        key, value, version, env.revision, env.write_id, env.writer, env.epoch, env.written_at
    )


def stage_body(state: BaseStageState[Any]) -> dict[str, Any]:
    """The JSON body of a stage state, refused unless it reads back exactly as given."""
    if not isinstance(state, BaseStageState):
        raise InvalidState(
            f"expected a BaseStageState subclass instance, got {type(state).__name__}"
        )
    keys.validate_task_id(state.task_id)
    keys.validate_stage_name(state.stage_name)
    where = f"{state.task_id}/{state.stage_name}"
    try:
        # warnings="error": a value of the wrong type must fail here, not be
        # written with a serializer warning and fail validation on the next load.
        body: dict[str, Any] = state.model_dump(mode="json", warnings="error")
    except (PydanticSerializationError, ValueError) as exc:
        # ValueError: e.g. UnicodeDecodeError for non-UTF-8 bytes in an Any field.
        raise InvalidState(f"state of {where} is not JSON-serializable: {exc}") from exc
    # A state that could not be read back would be corruption we wrote ourselves:
    # validate the exact body before it leaves the process.
    try:
        again = type(state).model_validate(body)
    except ValidationError as exc:
        raise InvalidState(f"state of {where} is invalid: {first_error(exc)}") from exc
    # ...and read back equal: JSON mode turns NaN into null and bytes into str in
    # untyped fields, so the resumed stage would see other data than it saved.
    if again != state:
        changed = next(
            (
                name
                for name in type(state).model_fields
                if getattr(again, name, None) != getattr(state, name, None)
            ),
            "<extra fields>",
        )
        raise InvalidState(
            f"state of {where} would not read back as saved: field {changed!r} changes "
            "in JSON (NaN/Infinity, bytes, tuples or sets in untyped fields)"
        )
    return body


def stage_parser(
    state_class: type[S], task_id: str, stage_name: str
) -> Callable[[dict[str, Any]], S]:
    """A parser that also refuses a body holding another stage's state (a copied object)."""

    def parse(body: dict[str, Any]) -> S:
        state = state_class.model_validate(body)
        if state.task_id != task_id or state.stage_name != stage_name:
            raise CorruptState(
                f"it holds the state of {state.task_id!r}/{state.stage_name!r}, not "
                f"{task_id!r}/{stage_name!r}",
                operation="decode",
            )
        return state

    return parse
