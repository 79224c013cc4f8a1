"""``write(key, data, Create())``: only if absent, else ``AlreadyExists``."""

from __future__ import annotations

from eleanor_cloud.backends.base import CREATE, ObjectBackend, Version
from eleanor_cloud.errors import AlreadyExists, Conflict
from eleanor_cloud.testing.conformance._base import ContractBase, expect_raises

__all__ = ["CreateContract"]


class CreateContract(ContractBase):
    def test_create_returns_the_version_a_read_sees(self, backend: ObjectBackend) -> None:
        key = self._key("a.json")
        version = backend.write(key, b'{"v": 1}', CREATE)
        assert isinstance(version, Version), (
            f"write must return an eleanor_cloud.backends.base.Version; got {version!r}"
        )
        data, read_version = backend.read(key)
        assert data == b'{"v": 1}', f"read after create returned other bytes: {data[:80]!r}"
        assert read_version == version, (
            "the version create returns must equal the version read returns for the same "
            f"body (the store saves with it without reading): create gave {version}, "
            f"read gave {read_version}"
        )

    def test_create_existing_raises_already_exists(self, backend: ObjectBackend) -> None:
        key = self._key("a.json")
        first = backend.write(key, b"first", CREATE)
        with expect_raises(AlreadyExists, "write(Create) of an existing key") as info:
            backend.write(key, b"second", CREATE)
        assert isinstance(info.value, Conflict), (
            "AlreadyExists must stay a Conflict subclass (the store handles both alike)"
        )
        assert backend.read(key) == (b"first", first), (
            "a refused create must leave the existing object and its version untouched"
        )
