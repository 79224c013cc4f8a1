"""Listing on obstore: the contract's string prefixes over object_store's path segments."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import obstore
from obstore import exceptions as obx

from eleanor_cloud.backends._listing import listing
from eleanor_cloud.errors import BackendError, EleanorError

if TYPE_CHECKING:
    from eleanor_cloud.backends.obstore._local import LocalCas

__all__ = ["list_keys"]

_ERRORS = (obx.BaseError, OSError, ValueError)
Translate = Callable[[BaseException, "str | None", str], EleanorError]


def list_keys(
    store: Any,
    local: LocalCas | None,
    prefix: str,
    delimiter: str | None,
    where: str,
    translate: Translate,
) -> Iterator[str]:
    """Keys starting with ``prefix`` in lexicographic order, ``/`` rolled up.

    object_store lists whole path segments (``a/b`` lists ``a/b/x``, never ``a/bc``),
    and the contract's prefix is a string: this lists the parent of the prefix's last
    segment and keeps what starts with the prefix.
    """
    parent = prefix.rpartition("/")[0] or None
    if local is not None or delimiter not in (None, "/"):
        # The local directory lists in no order (and has our lock files to hide); any
        # other delimiter is rolled up here.
        yield from listing(_names(store, local, parent, prefix, translate), prefix, delimiter)
        return
    if delimiter == "/":
        try:
            result = obstore.list_with_delimiter(store, parent)
        except _ERRORS as exc:
            raise translate(exc, prefix or None, "list") from exc
        keys = sorted(m["path"] for m in result["objects"] if m["path"].startswith(prefix))
        rolled = sorted(p + "/" for p in result["common_prefixes"] if (p + "/").startswith(prefix))
        yield from heapq.merge(keys, rolled)
        return
    # Object stores list in key order, page after page; a page out of order would break
    # the contract silently, so it is refused instead.
    last = ""
    for name in _names(store, None, parent, prefix, translate):
        if not name.startswith(prefix):
            continue
        if name <= last:
            raise BackendError(
                f"{where}: the listing of {prefix!r} came back out of order "
                f"({name!r} after {last!r})",
                key=prefix or None,
                operation="list",
            )
        last = name
        yield name


def _names(
    store: Any, local: LocalCas | None, parent: str | None, prefix: str, translate: Translate
) -> Iterator[str]:
    if local is not None:
        if parent is not None and not local.path(parent).is_dir():
            return
        names = local.keys(parent)
    else:
        names = (m["path"] for chunk in obstore.list(store, parent, chunk_size=1000) for m in chunk)
    while True:
        # Only the fetch is guarded: an exception thrown into this generator by its
        # consumer must not be mistaken for a store failure.
        try:
            name = next(names)
        except StopIteration:
            return
        except _ERRORS as exc:
            raise translate(exc, prefix or None, "list") from exc
        yield name
