"""The backend conformance suite: one contract every backend proves, ours and yours.

Use it from a test module (pytest is required)::

    import functools, pytest
    from eleanor_cloud.testing.conformance import BackendConformance

    def _open(root):                       # module level: picklable for subprocesses
        return MyBackend(root)

    class TestMyBackend(BackendConformance):
        supports_conditional_delete = True  # False: delete(if_version=) -> NotSupported
        shared_across_processes = True      # False: one process's store, no process races

        @pytest.fixture
        def backend(self, tmp_path):       # a fresh backend on an EMPTY namespace
            return MyBackend(tmp_path)

        @pytest.fixture
        def backend_factory(self, tmp_path):   # new instance, same data, other process
            return functools.partial(_open, tmp_path)

What the backend supports is declared by the test class, not reported by the backend:
for a capability declared missing, the suite asserts the operation raises
:class:`~eleanor_cloud.errors.NotSupported` and changes nothing (nothing is skipped).
``emulator_gaps = {"test_name": "reason"}`` marks single tests as known gaps of an
emulator (strict xfail: the day the emulator is fixed, the suite says so). Class
attributes tune the sizes of the races and listings for slow peers.

One mixin per part of the contract, each in the module named after it, so a failure
says which part broke (every assertion also says what it expected):

============================  =============  ===========================================
mixin                         module         proves
============================  =============  ===========================================
``ReadContract``              ``read``       bytes and versions round-trip; ``NotFound``
``CreateContract``            ``create``     create-if-absent; ``AlreadyExists``
``ReplaceContract``           ``replace``    compare-and-swap; stale and missing conflict
``OverwriteContract``         ``overwrite``  unconditional writes and their versions
``DeleteContract``            ``delete``     idempotent delete; optional conditional one
``ListContract``              ``listing``    order, delimiter roll-up, many pages
``RaceContract``              ``races``      one create winner, no lost CAS update
``AmbiguousOutcomeContract``  ``ambiguous``  lost answers reconciled by ``write_id``
``LostUpdateContract``        ``lost_updates``  stale copies conflict via any handle/thread
``StoreContract``             ``store``      tasks, manifests, leases, bad input, corruption
============================  =============  ===========================================

:class:`CountingBackend` and :class:`AmbiguousWriteBackend` (``wrappers``) are shipped
for tests of your own.
"""

from __future__ import annotations

import pytest

# Before the mixins are imported: pytest then shows the values in a failed assertion,
# besides its message (the suite lives in the package, not in a test module).
pytest.register_assert_rewrite(
    *(
        f"eleanor_cloud.testing.conformance.{name}"
        for name in (
            "ambiguous",
            "create",
            "delete",
            "listing",
            "lost_updates",
            "overwrite",
            "races",
            "read",
            "replace",
            "store",
        )
    )
)

from eleanor_cloud.testing.conformance._base import (  # noqa: E402
    BackendFactory,
    ContractBase,
    CounterState,
)
from eleanor_cloud.testing.conformance.ambiguous import AmbiguousOutcomeContract  # noqa: E402
from eleanor_cloud.testing.conformance.create import CreateContract  # noqa: E402
from eleanor_cloud.testing.conformance.delete import DeleteContract  # noqa: E402
from eleanor_cloud.testing.conformance.listing import ListContract  # noqa: E402
from eleanor_cloud.testing.conformance.lost_updates import LostUpdateContract  # noqa: E402
from eleanor_cloud.testing.conformance.overwrite import OverwriteContract  # noqa: E402
from eleanor_cloud.testing.conformance.races import RaceContract  # noqa: E402
from eleanor_cloud.testing.conformance.read import ReadContract  # noqa: E402
from eleanor_cloud.testing.conformance.replace import ReplaceContract  # noqa: E402
from eleanor_cloud.testing.conformance.store import StoreContract  # noqa: E402
from eleanor_cloud.testing.conformance.wrappers import (  # noqa: E402
    AmbiguousWriteBackend,
    CountingBackend,
)

__all__ = [
    "AmbiguousOutcomeContract",
    "AmbiguousWriteBackend",
    "BackendConformance",
    "BackendFactory",
    "ContractBase",
    "CounterState",
    "CountingBackend",
    "CreateContract",
    "DeleteContract",
    "ListContract",
    "LostUpdateContract",
    "OverwriteContract",
    "RaceContract",
    "ReadContract",
    "ReplaceContract",
    "StoreContract",
]


class BackendConformance(
    ReadContract,
    CreateContract,
    ReplaceContract,
    OverwriteContract,
    DeleteContract,
    ListContract,
    RaceContract,
    AmbiguousOutcomeContract,
    LostUpdateContract,
    StoreContract,
):
    """The whole contract; override the ``backend`` and ``backend_factory`` fixtures."""
