"""A permissive stage state for tools that have no access to the task's own classes."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict

from eleanor_cloud.models import BaseStageState

__all__ = ["AnyStageState"]


class AnyStageState(BaseStageState[Any]):
    """Reads any stage object: unknown fields are kept, the result stays a plain dict.

    The CLI loads states of tasks whose state class it cannot import; writing such a
    state back (cancel, redrive, reset) must not drop the user's fields, so extra fields
    are allowed and round-trip unchanged.
    """

    model_config = ConfigDict(extra="allow")
