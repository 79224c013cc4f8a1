"""``delete(key, if_version=None)``: unconditional delete is idempotent; a conditional one
is optional (``supports_conditional_delete``), and refused with ``NotSupported`` where
the backend cannot do it atomically."""

from __future__ import annotations

import pytest

from eleanor_cloud.backends.base import CREATE, ObjectBackend, Replace, Version
from eleanor_cloud.errors import Conflict, NotFound, NotSupported
from eleanor_cloud.testing.conformance._base import ContractBase, expect_raises

__all__ = ["DeleteContract"]


class DeleteContract(ContractBase):
    def _conditional_delete(self, backend: ObjectBackend, key: str, version: Version) -> bool:
        """Delete at ``version``; False if the backend refused, as it declared it would."""
        if self.supports_conditional_delete:
            try:
                backend.delete(key, if_version=version)
            except NotSupported as exc:
                pytest.fail(
                    f"delete(if_version=...) raised NotSupported ({exc}); declare "
                    "supports_conditional_delete = False on the test class if the backend "
                    "cannot delete conditionally",
                    pytrace=False,
                )
            return True
        with expect_raises(
            NotSupported,
            "supports_conditional_delete = False: delete(if_version=...) must refuse",
        ) as info:
            backend.delete(key, if_version=version)
        assert info.value.operation, (
            "NotSupported must name the operation it refuses (e.g. 'conditional delete')"
        )
        return False

    def test_delete_unconditional_and_missing_is_noop(self, backend: ObjectBackend) -> None:
        key = self._key("a.json")
        backend.write(key, b"one", CREATE)
        backend.delete(key)
        with expect_raises(NotFound, "read after an unconditional delete"):
            backend.read(key)
        backend.delete(key)  # must not raise: deleting what is not there is a no-op
        backend.write(key, b"again", CREATE)
        assert backend.read(key)[0] == b"again", (
            "after a delete the key must be free for a new create"
        )

    def test_delete_if_version_matches(self, backend: ObjectBackend) -> None:
        key = self._key("a.json")
        version = backend.write(key, b"one", CREATE)
        if self._conditional_delete(backend, key, version):
            with expect_raises(NotFound, "read after delete(if_version=<current>)"):
                backend.read(key)
        else:
            assert backend.read(key) == (b"one", version), (
                "a refused conditional delete must leave the object untouched"
            )

    def test_delete_if_version_mismatch_conflicts(self, backend: ObjectBackend) -> None:
        key = self._key("a.json")
        v1 = backend.write(key, b"one", CREATE)
        v2 = backend.write(key, b"two", Replace(v1))
        if self.supports_conditional_delete:
            with expect_raises(Conflict, "delete(if_version=<stale>)"):
                backend.delete(key, if_version=v1)
        else:
            with expect_raises(NotSupported, "supports_conditional_delete = False"):
                backend.delete(key, if_version=v1)
        assert backend.read(key) == (b"two", v2), (
            "delete(if_version=<stale>) must leave the current object untouched"
        )

    def test_delete_if_version_missing(self, backend: ObjectBackend) -> None:
        key = self._key("a.json")
        version = backend.write(key, b"one", CREATE)
        backend.delete(key)
        if self.supports_conditional_delete:
            with expect_raises((NotFound, Conflict), "delete(if_version=...) of a missing key"):
                backend.delete(key, if_version=version)
        else:
            with expect_raises(NotSupported, "supports_conditional_delete = False"):
                backend.delete(key, if_version=version)
