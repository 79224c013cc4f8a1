"""``write(key, data, Replace(version))``: compare-and-swap, ``Conflict`` otherwise."""

from __future__ import annotations

from eleanor_cloud.backends.base import CREATE, Create, ObjectBackend, Replace, Version
from eleanor_cloud.errors import AlreadyExists, Conflict, NotFound
from eleanor_cloud.testing.conformance._base import ContractBase, expect_raises

__all__ = ["ReplaceContract"]


class ReplaceContract(ContractBase):
    def test_replace_at_current_version(self, backend: ObjectBackend) -> None:
        key = self._key("a.json")
        v1 = backend.write(key, b"one", CREATE)
        v2 = backend.write(key, b"two", v1.to_replace())
        assert v2 != v1, "write(Replace) must return a new version token; got the old one back"
        assert backend.read(key) == (b"two", v2), (
            "after write(Replace) a read must return the new body with the version the "
            "write returned"
        )

    def test_replace_with_stale_version_conflicts(self, backend: ObjectBackend) -> None:
        key = self._key("a.json")
        v1 = backend.write(key, b"one", CREATE)
        v2 = backend.write(key, b"two", Replace(v1))
        with expect_raises(Conflict, "write(Replace) at a stale version"):
            backend.write(key, b"three", Replace(v1))
        assert backend.read(key) == (b"two", v2), (
            "a write(Replace) at a stale version must change nothing (that is the "
            "compare-and-swap: a lost update otherwise)"
        )

    def test_replace_missing_conflicts(self, backend: ObjectBackend) -> None:
        key = self._key("a.json")
        version = backend.write(self._key("b.json"), b"x", CREATE)  # a real token
        with expect_raises(Conflict, "write(Replace) of a missing key") as info:
            backend.write(key, b"one", Replace(version))
        assert not isinstance(info.value, AlreadyExists), (
            "write(Replace) of a missing key must raise Conflict, not AlreadyExists"
        )
        with expect_raises(
            NotFound, "a refused write(Replace) of a missing key must create nothing"
        ):
            backend.read(key)

    def test_write_modes_are_a_closed_type(self) -> None:
        version = Version("v1")
        assert isinstance(version.to_replace(), Replace), "Version.to_replace() is a Replace"
        assert version.to_replace().version is version, (
            "Version.to_replace() must carry exactly that version"
        )
        assert isinstance(CREATE, Create), "CREATE is the Create mode"
