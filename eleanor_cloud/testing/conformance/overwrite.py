"""``write(key, data, Overwrite())``: unconditional, absent or not."""

from __future__ import annotations

from eleanor_cloud.backends.base import OVERWRITE, ObjectBackend, Replace
from eleanor_cloud.errors import Conflict
from eleanor_cloud.testing.conformance._base import ContractBase, expect_raises

__all__ = ["OverwriteContract"]


class OverwriteContract(ContractBase):
    def test_overwrite_is_unconditional(self, backend: ObjectBackend) -> None:
        key = self._key("a.json")
        v1 = backend.write(key, b"one", OVERWRITE)
        assert backend.read(key) == (b"one", v1), (
            "write(Overwrite) of a missing key must create it, returning the version a read sees"
        )
        v2 = backend.write(key, b"two", OVERWRITE)
        assert backend.read(key) == (b"two", v2), (
            "write(Overwrite) of an existing key must replace it, returning the version a read sees"
        )

    def test_overwrite_gives_a_new_version(self, backend: ObjectBackend) -> None:
        key = self._key("a.json")
        v1 = backend.write(key, b"one", OVERWRITE)
        v2 = backend.write(key, b"two", OVERWRITE)
        assert v2 != v1, "write(Overwrite) of a new body must return a new version token"
        with expect_raises(Conflict, "write(Replace) at the version an overwrite replaced"):
            backend.write(key, b"x", Replace(v1))
        v3 = backend.write(key, b"three", Replace(v2))
        assert backend.read(key) == (b"three", v3), (
            "the version write(Overwrite) returns must be usable by the next write(Replace)"
        )
