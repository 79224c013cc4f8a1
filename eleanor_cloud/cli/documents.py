"""What every ``--json`` document shares: the base models and the version key.

See :mod:`eleanor_cloud.cli.shapes` for the documents and the rules they follow.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["JSON_SCHEMA_DIALECT", "SCHEMA", "Document", "Model", "sometimes"]

SCHEMA = 1
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _is_none(value: object) -> bool:
    return value is None


def _drop_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def sometimes(description: str) -> Any:
    """A field present in some commands' documents only: left out, never ``null``."""
    return Field(
        None, exclude_if=_is_none, json_schema_extra=_drop_default, description=description
    )


class Model(BaseModel):
    # Descriptions are given as Field(description=...), not attribute docstrings:
    # pydantic would read and parse this file's source at import to find those.
    model_config = ConfigDict(
        defer_build=True,
        frozen=True,
        # Printed documents always carry their defaulted fields (schema, kind): required.
        json_schema_serialization_defaults_required=True,
    )


class Document(Model):
    schema_: Literal[1] = Field(
        1,
        alias="schema",
        description="The version of this document's shape: fields are only added within it.",
    )
    kind: str = Field(
        description="Which document this is (each subclass fixes it; declared here to come second)."
    )
    store: str = Field(
        description="The store, as the backend describes it (e.g. ``file:///.../.eleanor``)."
    )

    # The document's ``kind`` (also its schema file's name), and the commands that
    # print it (``eleanor-cloud schema`` lists them).
    kind_name: ClassVar[str]
    commands: ClassVar[str]
