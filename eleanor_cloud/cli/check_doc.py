"""The ``check`` document: does the store honour conditional writes, and what may the
credentials do? (Its own module: :mod:`.shapes` holds the task documents.)"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from eleanor_cloud.cli.documents import Document, Model

__all__ = ["CheckDoc", "CheckRow", "Permissions"]

CheckName = Literal[
    "conditional_create", "conditional_replace", "put", "get", "list", "delete", "open"
]
Outcome = Literal["pass", "fail", "info", "skipped"]


class CheckRow(Model):
    """One check, in the order run."""

    name: CheckName = Field(
        description="``open``: the store could not even be opened for conditional writes."
    )
    outcome: Outcome = Field(
        description="``fail`` makes the command exit 1; ``info`` never does (``delete``)."
    )
    detail: str = Field(description="What was done and what it showed, in one line.")


class Permissions(Model):
    """What the credentials may do (``null``: not checked, or nothing to check)."""

    get: bool | None = Field(description="Read an object (``s3:GetObject``).")
    put: bool | None = Field(description="Write an object, conditionally (``s3:PutObject``).")
    list: bool | None = Field(description="List the prefix (``s3:ListBucket``).")
    delete: bool | None = Field(
        description="Delete an object (``s3:DeleteObject``): a runner's credentials should "
        "not, an operator's may; reported, never a failure."
    )


class CheckDoc(Document):
    """Whether the store honours conditional writes, and the credentials' permissions."""

    kind_name: ClassVar[str] = "check"
    commands: ClassVar[str] = "check"

    kind: Literal["check"] = "check"
    backend: str = Field(description="The backend's class (``S3Backend``, ``LocalBackend``...).")
    endpoint: str | None = Field(description="The S3 endpoint URL; ``null`` for other stores.")
    probe_key: str | None = Field(
        description="The object the checks write (``<prefix>/_probe/conditions.json``, never "
        "a task's); ``null`` when the store could not be opened."
    )
    ok: bool = Field(description="No check failed: the command exits 0.")
    conditional_create: bool | None = Field(
        description="A create-if-absent (``If-None-Match: *``) of an existing object was "
        "refused; ``null``: not checked."
    )
    conditional_replace: bool | None = Field(
        description="A compare-and-swap (``If-Match``) naming a version the object never "
        "had was refused; ``null``: not checked."
    )
    permissions: Permissions
    checks: list[CheckRow]
