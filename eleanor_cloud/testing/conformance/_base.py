"""What every contract mixin shares: the fixtures a test class overrides, the parameters
it declares (what the backend supports, how big the races are) and small helpers."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Callable, Iterator
from typing import ClassVar, TypeVar

import pytest

from eleanor_cloud.backends.base import ObjectBackend
from eleanor_cloud.models import BaseStageState, SimpleRecordsResult
from eleanor_cloud.store.state_store import StateStore

__all__ = ["PREFIX", "BackendFactory", "ContractBase", "CounterState", "expect_raises"]

E = TypeVar("E", bound=BaseException)

PREFIX = "conformance"
BackendFactory = Callable[[], ObjectBackend]


class CounterState(BaseStageState[SimpleRecordsResult]):
    """The state the races increment (importable, so subprocesses can use it)."""

    count: int = 0
    note: str = ""


@contextlib.contextmanager
def expect_raises(
    expected: type[E] | tuple[type[E], ...], because: str, *, match: str | None = None
) -> Iterator[pytest.ExceptionInfo[E]]:
    """``pytest.raises`` that says what broke: ``because`` is the rule the backend broke,
    whether it raised nothing, something else, or a message not matching ``match``."""
    names = " or ".join(
        t.__name__ for t in (expected if isinstance(expected, tuple) else (expected,))
    )
    raised = True
    try:
        with pytest.raises(expected) as info:
            yield info
    except pytest.fail.Exception:  # pytest.raises saw nothing raised
        raised = False
    except Exception as exc:  # anything else is reported as the rule it breaks
        raise AssertionError(
            f"{because}: expected {names}, got {type(exc).__name__}: {exc}"
        ) from exc
    if not raised:  # failed outside the handler: pytest's own "DID NOT RAISE" is noise
        pytest.fail(f"{because}: expected {names}, but nothing was raised")
    if match is not None and not re.search(match, str(info.value)):
        pytest.fail(f"{because}: the message must match {match!r}; got {str(info.value)!r}")


class ContractBase:
    """Fixtures and parameters of a conformance run; see the package docstring."""

    # -- what the backend supports (parameters of the run, not flags it reports) --------
    #: ``delete(key, if_version=...)`` is atomic. When False, the suite asserts that a
    #: conditional delete raises ``NotSupported`` and changes nothing.
    supports_conditional_delete: ClassVar[bool] = True
    #: Separate processes opening the same store see one store (a directory, a bucket).
    #: When False the process races are not collected: there is no second process to
    #: race with (threads still race).
    shared_across_processes: ClassVar[bool] = True

    # -- sizes, for slow peers -----------------------------------------------------------
    emulator_gaps: ClassVar[dict[str, str]] = {}
    race_threads: ClassVar[int] = 8
    race_processes: ClassVar[int] = 6
    cas_workers: ClassVar[int] = 8
    cas_increments: ClassVar[int] = 50
    many_keys: ClassVar[int] = 1100  # past S3's 1000-key page
    process_timeout: ClassVar[float] = 240.0

    # -- fixtures to override ------------------------------------------------------------

    @pytest.fixture
    def backend(self) -> ObjectBackend:
        """A fresh backend over an EMPTY namespace (override it)."""
        raise NotImplementedError("override the `backend` fixture: a fresh, empty backend")

    @pytest.fixture
    def backend_factory(self, backend: ObjectBackend) -> BackendFactory | None:
        """A picklable callable opening a NEW backend over the same data (override it
        when ``shared_across_processes``: the process races call it in subprocesses)."""
        return None

    # -- plumbing ------------------------------------------------------------------------

    @pytest.fixture(autouse=True)
    def _mark_emulator_gap(self, request: pytest.FixtureRequest) -> None:
        name = getattr(request.node, "originalname", request.node.name)
        reason = self.emulator_gaps.get(name)
        if reason:
            request.applymarker(pytest.mark.xfail(reason=f"emulator gap: {reason}", strict=True))

    @pytest.fixture
    def store(self, backend: ObjectBackend) -> StateStore:
        return StateStore(backend, PREFIX)

    @staticmethod
    def _key(name: str) -> str:
        """A key no other test uses, under the suite's prefix."""
        return f"{PREFIX}/t-{uuid.uuid4().hex[:8]}/{name}"

    @staticmethod
    def _task_id(kind: str) -> str:
        return f"{kind}-{uuid.uuid4().hex[:8]}"
