"""Private views of a StateStore: same backend and prefix, own version cache and epoch.

The engine never shares a StateStore with its caller or with its own helpers: a save is
a compare-and-swap against the version the *same* view last saw, and the envelope's
epoch is the view's. A shared view would let one party's writes silently become the
base of another's compare-and-swap (a lost update), and a read made to look for a
cancel must never move the base the running stage writes against.
"""

from __future__ import annotations

from eleanor_cloud.store.state_store import StateStore

__all__ = ["private_view"]


def private_view(store: StateStore) -> StateStore:
    """A new StateStore over ``store``'s backend and prefix, writer and clock."""
    return StateStore(
        store.backend,
        store.prefix,
        writer=lambda: store.writer,
        clock=store.clock,
        max_workers=store.max_workers,
    )
