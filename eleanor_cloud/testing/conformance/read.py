"""``read(key) -> (bytes, Version)``: what was written comes back, byte for byte."""

from __future__ import annotations

from eleanor_cloud.backends.base import CREATE, ObjectBackend
from eleanor_cloud.errors import NotFound
from eleanor_cloud.testing.conformance._base import ContractBase, expect_raises

__all__ = ["ReadContract"]


class ReadContract(ContractBase):
    def test_protocol_shape(self, backend: ObjectBackend) -> None:
        assert isinstance(backend, ObjectBackend), (
            f"{type(backend).__name__} must have description, read, write, delete and list "
            "(eleanor_cloud.backends.base.ObjectBackend)"
        )
        assert isinstance(backend.description, str), (
            f"description must be a str naming where the data lives; got "
            f"{type(backend.description).__name__}"
        )
        assert backend.description, "description must not be empty: error messages quote it"

    def test_read_missing_raises_not_found(self, backend: ObjectBackend) -> None:
        key = self._key("missing.json")
        with expect_raises(NotFound, "read of a missing key") as info:
            backend.read(key)
        assert isinstance(info.value, FileNotFoundError), (
            "read of a missing key must raise eleanor_cloud.errors.NotFound, which is also "
            f"a FileNotFoundError; got {type(info.value).__mro__}"
        )

    def test_binary_and_empty_bodies_round_trip(self, backend: ObjectBackend) -> None:
        body = bytes(range(256)) * 4
        key = self._key("bin.json")
        backend.write(key, body, CREATE)
        data, _ = backend.read(key)
        assert data == body, (
            "read must return the written bytes exactly (no decoding, newline or "
            f"encoding changes); got {len(data)} bytes back for {len(body)} written"
        )
        empty = self._key("empty.json")
        backend.write(empty, b"", CREATE)
        data, _ = backend.read(empty)
        assert data == b"", f"an empty body must read back empty; got {data[:40]!r}"
