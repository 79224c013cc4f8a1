"""The one exception tree of eleanor_cloud.

Every backend translates its library's errors into these at the boundary
(``raise ... from exc``), so callers handle one documented set whatever the store is.

    EleanorError
    ├── InvalidKey (ValueError)              a task id / stage name / prefix broke a rule
    ├── InvalidState (ValueError)            a state or argument is wrong before any I/O
    ├── ConfigurationError                   bad store URL, unknown scheme, bad option
    │   └── MissingDependency (ImportError)  an optional extra is not installed
    ├── NotFound (FileNotFoundError)         the object / task / stage does not exist
    ├── Conflict                             a conditional write lost (precondition failed)
    │   └── AlreadyExists (FileExistsError)  create-if-absent found an object
    ├── NotSupported                         the backend cannot do this atomically
    ├── CorruptState                         stored bytes are not a valid record
    ├── BackendError                         the store failed to answer
    │   ├── AccessDenied (PermissionError)   credentials missing, expired or refused
    │   ├── BucketNotFound                   the bucket / container does not exist
    │   └── Unavailable                      transient: throttled, 5xx, connection lost
    ├── LeaseHeld                            another holder has a live lease on the task
    ├── LeaseLost                            this holder was fenced out by a takeover
    └── TaskBindingError                     a task exists with a different definition
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = [
    "AccessDenied",
    "AlreadyExists",
    "BackendError",
    "BucketNotFound",
    "ConfigurationError",
    "Conflict",
    "CorruptState",
    "EleanorError",
    "InvalidKey",
    "InvalidState",
    "LeaseHeld",
    "LeaseLost",
    "MissingDependency",
    "NotFound",
    "NotSupported",
    "TaskBindingError",
    "Unavailable",
]


class EleanorError(Exception):
    """Base of every error eleanor_cloud raises on purpose.

    ``key`` names the object concerned (when there is one) and ``operation`` the call
    that failed, so one log line says what went wrong where.
    """

    def __init__(
        self, message: str, *, key: str | None = None, operation: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.key = key
        self.operation = operation

    def __str__(self) -> str:
        return self.message


class InvalidKey(EleanorError, ValueError):
    """A task id, stage name or prefix is not one safe path segment."""

    def __init__(self, value: object, rule: str, *, field: str = "key") -> None:
        super().__init__(f"invalid {field} {value!r}: {rule}", operation="validate")
        self.value = value
        self.rule = rule
        self.field = field


class InvalidState(EleanorError, ValueError):
    """A state, result or argument is unusable; raised before any I/O."""


class ConfigurationError(EleanorError):
    """A store URL, option or backend definition is wrong."""


class MissingDependency(ConfigurationError, ImportError):
    """An optional dependency is needed; the message says what to install."""

    def __init__(self, message: str, *, install: str) -> None:
        super().__init__(message, operation="open_store")
        self.install = install


class NotFound(EleanorError, FileNotFoundError):
    """The object, stage or task does not exist."""


class Conflict(EleanorError):
    """A conditional write or delete lost: the object is not at the expected version.

    ``current`` holds the current record when it was read while handling the
    conflict (the store does so when reconciling), else ``None``.
    """

    def __init__(
        self,
        message: str,
        *,
        key: str | None = None,
        operation: str | None = None,
        current: Any = None,
    ) -> None:
        super().__init__(message, key=key, operation=operation)
        self.current = current


class AlreadyExists(Conflict, FileExistsError):
    """Create-if-absent found an object already there."""


class NotSupported(EleanorError):
    """The backend cannot perform ``operation`` atomically, so it refuses to at all."""

    def __init__(self, operation: str, backend: str, *, detail: str = "") -> None:
        text = f"{backend} cannot perform {operation} atomically"
        super().__init__(f"{text}: {detail}" if detail else text, operation=operation)
        self.backend = backend


class CorruptState(EleanorError):
    """Stored bytes are not a valid record; nothing is overwritten to repair them."""


class BackendError(EleanorError):
    """The store did not perform the operation (and said so, or could not be reached)."""


class AccessDenied(BackendError, PermissionError):
    """Credentials are missing, expired or not allowed to do this."""


class BucketNotFound(BackendError):
    """The bucket or container named in the store URL does not exist."""


class Unavailable(BackendError):
    """A transient failure remained after retries: throttling, 5xx, lost connection."""


class LeaseHeld(EleanorError):
    """Another holder has a live lease on the task.

    ``watch`` (an ``eleanor_cloud.engine.LeaseWatch``) is how long this challenger saw
    the lease stand still and ``needed_seconds`` how long it must before taking it over:
    an invocation that stopped watching at its deadline hands ``watch`` to the next.
    """

    def __init__(
        self,
        message: str,
        *,
        key: str | None = None,
        holder: str | None = None,
        expires_at: str | None = None,
        watch: Any = None,
        needed_seconds: float | None = None,
    ) -> None:
        super().__init__(message, key=key, operation="acquire_lease")
        self.holder = holder
        self.expires_at = expires_at
        self.watch = watch
        self.needed_seconds = needed_seconds


class LeaseLost(EleanorError):
    """This holder's lease was taken over; it must stop writing."""


class TaskBindingError(EleanorError):
    """The task already exists with a different stage list or state class."""


class _Validation(Protocol):
    def errors(self) -> Any: ...


def first_error(exc: _Validation) -> str:
    """``field 'a.b': message`` for the first error a pydantic ``ValidationError`` reports.

    Duck-typed so this floor module imports no pydantic: callers name the field that
    was wrong, never hand the user a raw validation dump.
    """
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "<root>"
    return f"field {where!r}: {first['msg']}"
