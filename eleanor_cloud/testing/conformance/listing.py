"""``list(prefix, delimiter=None)``: keys under a prefix in order, rolled up by delimiter."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from eleanor_cloud.backends.base import CREATE, ObjectBackend
from eleanor_cloud.testing.conformance._base import PREFIX, ContractBase

__all__ = ["ListContract"]


class ListContract(ContractBase):
    def test_list_prefix_order_and_delimiter(self, backend: ObjectBackend) -> None:
        names = ["t1/b.json", "t1/a.json", "t1/sub/c.json", "t2/a.json", "t10/a.json"]
        for name in names:
            backend.write(f"{PREFIX}/{name}", b"x", CREATE)
        backend.write("elsewhere/t1/a.json", b"x", CREATE)
        listed = list(backend.list(f"{PREFIX}/t1/"))
        assert listed == [
            f"{PREFIX}/t1/a.json",
            f"{PREFIX}/t1/b.json",
            f"{PREFIX}/t1/sub/c.json",
        ], (
            "list(prefix) must yield every key under the prefix, nested ones included, in "
            f"lexicographic order, and nothing else; got {listed}"
        )
        rolled = list(backend.list(f"{PREFIX}/t1/", delimiter="/"))
        assert rolled == [f"{PREFIX}/t1/a.json", f"{PREFIX}/t1/b.json", f"{PREFIX}/t1/sub/"], (
            "list(prefix, delimiter='/') must roll keys with a further '/' up into one "
            f"entry ending in '/' (S3's CommonPrefixes), in order; got {rolled}"
        )
        top = list(backend.list(f"{PREFIX}/", delimiter="/"))
        assert top == [f"{PREFIX}/t1/", f"{PREFIX}/t10/", f"{PREFIX}/t2/"], (
            "rolled-up prefixes must sort as strings ('t1/' < 't10/' < 't2/') and appear "
            f"once each; got {top}"
        )
        nothing = list(backend.list(f"{PREFIX}/nothing/"))
        assert nothing == [], f"a prefix with no keys must list nothing; got {nothing}"

    def test_list_many_keys(self, backend: ObjectBackend) -> None:
        keys = [f"{PREFIX}/many/k{i:05d}.json" for i in range(self.many_keys)]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda k: backend.write(k, b"x", CREATE), keys))
        listed = list(backend.list(f"{PREFIX}/many/"))
        assert listed == keys, (
            f"a listing past one page ({self.many_keys} keys) must yield every key once, in "
            f"order; got {len(listed)} keys"
            + ("" if len(listed) != len(keys) else " in another order or with duplicates")
        )
        top = list(backend.list(f"{PREFIX}/", delimiter="/"))
        assert top == [f"{PREFIX}/many/"], (
            f"a roll-up over many pages must yield the common prefix once; got {top[:5]}"
        )
