"""The exclusive-execution lease of one task: acquire, renew, release.

``<prefix>/<task_id>/_lease.json`` holds ``holder``, ``epoch`` and ``expires_at``.

- Acquire: Create (a task nobody ever ran: one PUT). Else read it: a *released* lease
  is replaced with ``epoch + 1`` (its holder promised to stop); a *live* one raises
  ``LeaseHeld`` (or is polled for up to ``wait`` seconds); an *expired* one is taken
  over with ``epoch + 1`` and the caller must fence the task (``takeover`` is set).
- Expiry is judged without trusting any other host's clock (:mod:`.lease_watch`): a
  lease is taken over only after this challenger watched it stay at one version for
  ``ttl_seconds + clock_skew_tolerance``; ``expires_at`` only decides how long to
  watch (one that looks expired by this host's clock is watched for up to one TTL even
  when ``wait`` is 0). A lease broken by ``eleanor-cloud lease --break`` is taken over
  at once. A wrong judgement can only cause a takeover; the fence keeps it safe.
- Renew: a background thread replaces the lease every ``renew_interval`` seconds
  (default ttl/3) with a new ``expires_at`` and ``renewals + 1``. A refused renewal
  (Conflict: somebody took over) marks the lease lost; a transient failure is retried
  on the next tick. The holder also keeps a local deadline: the time its last
  acknowledged write was *sent* + TTL - margin; past it ``lost`` is true, in-flight
  request or not.
- Release: replace with ``released=True``. The object is kept, so epochs only grow.

The manager holds the record it last wrote and every write names it (``replaces=``):
the renewer thread and a releaser on another thread compare-and-swap against the same
record, one at a time (a lock), so neither can base a write on a version the other
already replaced.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from eleanor_cloud.clock import Clock, format_ts, utc_now
from eleanor_cloud.engine.lease_watch import LeaseWatch, Watcher, is_expired
from eleanor_cloud.engine.options import LeaseOptions
from eleanor_cloud.errors import (
    AlreadyExists,
    Conflict,
    EleanorError,
    InvalidState,
    LeaseHeld,
    LeaseLost,
)
from eleanor_cloud.store.records import BROKEN_EXPIRY, Lease, Record
from eleanor_cloud.store.state_store import StateStore

__all__ = ["LeaseManager"]

_log = logging.getLogger("eleanor_cloud.engine")
_MAX_RACES = 20  # lost create/replace races in one acquire before giving up


class LeaseManager:
    """Holds one task's lease for one engine run. Not reusable after ``release``."""

    def __init__(
        self,
        store: StateStore,
        task_id: str,
        *,
        holder: str,
        ttl: float,
        clock: Clock,
        sleep: Callable[[float], None],
        clock_skew_tolerance: float = 5.0,
        wait: float = 0.0,
        renew_interval: float | None = None,
        on_lost: Callable[[str], None] | None = None,
        monotonic: Callable[[], float] | None = None,
        prior_watch: LeaseWatch | None = None,
        key: str | None = None,
        label: str | None = None,
    ) -> None:
        options = LeaseOptions(ttl, wait, clock_skew_tolerance, renew_interval)
        self._store = store
        self.task_id = task_id
        self.key = key or store.lease_key(task_id)  # a shard's lease lives elsewhere
        self.label = label or f"task {task_id!r}"  # what errors name: a task, a shard
        self.holder = holder
        self.options = options
        self.ttl = options.ttl
        self._clock = clock
        self._sleep = sleep
        self.skew = options.clock_skew_tolerance
        self.wait = options.wait
        self.renew_interval = options.interval
        self._on_lost = on_lost
        self._extra = {"task_id": task_id, "stage_name": None}  # on every log record
        self._record: Record[Lease] | None = None
        self._lost = threading.Event()
        self._lost_reason = ""
        self._stop = threading.Event()
        # release() may come twice, from two threads (interrupt and the run's finally).
        self._release_lock = threading.Lock()
        self._released = False
        self._renewer: threading.Thread | None = None
        # Renewals and the release replace self._record one at a time (see _rewrite).
        self._write_lock = threading.Lock()
        self.epoch = 0
        self.takeover = False
        self.created = False
        # How long a lease has sat unchanged is measured on this process's own clock:
        # time.monotonic, or the injected clock (a test's whole notion of time).
        if monotonic is None:
            monotonic = time.monotonic if clock is utc_now else (lambda: clock().timestamp())
        self._monotonic = monotonic
        self._watcher = Watcher(prior_watch)
        self._watch_left = 0.0
        # The local deadline (monotonic): when the last acknowledged write of the lease
        # was *sent*, plus TTL minus the margin. Past it this holder acts as if the lease
        # were lost, whether or not a renewal is still in flight.
        self._valid_until: float | None = None
        self._confirm = 0.0

    # -- state ------------------------------------------------------------------------
    @property
    def lost(self) -> bool:
        """True once this holder knows (or must assume) another may hold the lease.

        Includes the local deadline: no renewal acknowledged within TTL - margin of being
        sent. Reading it never waits for a request.
        """
        if self._lost.is_set():
            return True
        until = self._valid_until
        if until is not None and not self._released and self._monotonic() >= until:
            self._mark_lost(
                f"no renewal acknowledged within {self.ttl - self.options.margin:.3f}s of "
                "being sent: the lease may have expired for others, so this holder stops"
            )
            return True
        return False

    def _held_until(self, sent: float) -> None:
        self._valid_until = sent + self.ttl - self.options.margin

    monotonic = property(lambda self: self._monotonic, doc="This holder's elapsed-time clock.")

    @property
    def lease(self) -> Lease | None:
        """The lease as last written by this holder."""
        return self._record.value if self._record else None

    def check(self) -> None:
        """``LeaseLost`` if lost, or released (``interrupt()`` releases mid-stage)."""
        if self._released and not self._lost.is_set():
            self._lost_reason = "it was released"
        if self.lost or self._released:
            raise LeaseLost(
                f"{self.label}: lease lost by {self.holder!r}: {self._lost_reason}",
                key=self.key,
            )

    def _mark_lost(self, reason: str) -> None:
        if self._lost.is_set():
            return
        self._lost_reason = reason
        self._lost.set()
        _log.warning("task %s: lease lost: %s", self.task_id, reason, extra=self._extra)
        if self._on_lost is not None:
            self._on_lost(reason)

    # -- acquire ----------------------------------------------------------------------

    def acquire(self, *, probably_new: bool = False, time_left: float | None = None) -> Lease:
        """Take the lease, polling up to ``wait`` seconds while another holds it.

        ``probably_new``: the task was just bound, so try Create before reading (one
        request instead of two). Sets ``epoch``, ``takeover`` and ``created``.
        ``time_left``: seconds until the caller's deadline; no wait outlives it (the
        ``LeaseHeld`` raised then carries the watch so far, for the next invocation).
        """
        waited = confirm_until = 0.0
        # Per call: 0 = not yet judged, > 0 = confirm for that long, < 0 = confirming.
        # The watch itself (self._watch) stays valid across calls: a version seen
        # earlier that still stands has stood all that time.
        self._confirm = 0.0
        self._watch_left = 0.0
        while True:
            try:
                return self._acquire_once(probably_new)
            except LeaseHeld as held:
                if self._confirm > 0:
                    # It looks expired by our clock: watch it for one TTL, whatever wait.
                    confirm_until, self._confirm = waited + self._confirm, -1.0
                budget = max(self.wait, confirm_until)
                if time_left is not None:
                    if self._watch_left > time_left - waited:
                        raise  # the watch cannot end in time: leave the waiting to the caller
                    budget = min(budget, max(0.0, time_left))
                if waited >= budget:
                    raise
                delay = min(budget - waited, self._poll_delay(held))
                _log.info(
                    "task %s: lease held by %s; waiting %.2fs",
                    self.task_id,
                    held.holder,
                    delay,
                    extra=self._extra,
                )
                self._sleep(delay)
                waited += delay
                probably_new = False

    def _poll_delay(self, held: LeaseHeld) -> float:
        # Wake when the watch could be over, but often enough to see an early release.
        floor, cap = 0.05, max(0.05, self.ttl / 4)
        return max(floor, min(cap, self._watch_left))

    @property
    def watch(self) -> LeaseWatch | None:
        """How long this challenger has seen the lease stand still (to carry on)."""
        return self._watcher.snapshot(self._monotonic())

    def _new_lease(self, epoch: int, now: datetime, floor: int = 0) -> Lease:
        return Lease(
            task_id=self.task_id,
            holder=self.holder,
            epoch=epoch,
            acquired_at=format_ts(now),
            expires_at=format_ts(now + timedelta(seconds=self.ttl)),
            ttl_seconds=self.ttl,
            floor=floor,
        )

    def _acquire_once(self, try_create: bool) -> Lease:
        store = self._store
        for _ in range(_MAX_RACES):
            now = self._clock()
            asked = self._monotonic()
            current = None if try_create else store.load_lease(self.task_id, key=self.key)
            if current is None:
                try:
                    new = self._new_lease(1, now)
                    self._record = store.write_lease(new, replaces=None, key=self.key)
                except AlreadyExists:
                    try_create = False
                    continue  # read it (remembering its version) and decide
                self._held_until(asked)
                self.epoch, self.takeover, self.created = 1, False, True
                return self._record.value
            try_create = False
            old = current.value
            if old.released:
                takeover = False
            elif old.expires_at == BROKEN_EXPIRY:
                # Broken by an operator (`lease --break`), who vouches that the holder is
                # gone; the break moved the version, so a holder alive after all fails
                # its next renewal. Take over (and fence) now: watching would make the
                # break cost a whole TTL.
                takeover = True
            else:
                # Not expires_at against our clock: the holder's clock may be hours off.
                needed = old.ttl_seconds + self.skew
                watched = self._watcher.observe(current.version.token, asked, self._monotonic())
                if watched < needed:
                    self._watch_left = needed - watched
                    if self._confirm == 0.0 and is_expired(old, now, self.skew):
                        # Looks abandoned by our clock: confirm by watching it (once).
                        self._confirm = self._watch_left + max(0.05, self.ttl / 4)
                    raise LeaseHeld(
                        f"{self.label} is leased by {old.holder!r} (epoch "
                        f"{old.epoch}) until {old.expires_at} by its clock; unchanged for "
                        f"{watched:.2f}s of the {needed:.2f}s after which it counts as "
                        "abandoned",
                        key=current.key,
                        holder=old.holder,
                        expires_at=old.expires_at,
                        watch=self.watch,
                        needed_seconds=needed,
                    )
                takeover = True
            epoch = max(old.epoch, current.epoch) + 1
            sent = self._monotonic()
            try:
                new = self._new_lease(epoch, now, floor=old.floor)  # the floor outlives holders
                self._record = store.write_lease(new, replaces=current, key=self.key)
            except Conflict:
                continue  # somebody else moved it first: look again
            self._held_until(sent)
            self.epoch, self.takeover, self.created = epoch, takeover, False
            if takeover:
                _log.warning(
                    "task %s: took over the expired lease of %s (epoch %d -> %d)",
                    self.task_id,
                    old.holder,
                    old.epoch,
                    epoch,
                    extra=self._extra,
                )
            return self._record.value
        raise LeaseHeld(
            f"{self.label}: lost {_MAX_RACES} races for the lease",
            key=self.key,
        )

    # -- renew ------------------------------------------------------------------------

    def start_renewing(self) -> None:
        """Renew from a daemon thread every ``renew_interval`` seconds until release."""
        if self._record is None:
            raise InvalidState("start_renewing() before acquire()")
        self._renewer = threading.Thread(
            target=self._renew_loop, daemon=True, name=f"eleanor-renew-{self.task_id}"
        )
        self._renewer.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.renew_interval):
            if self.lost:
                return
            try:
                self.renew_once()
            except Exception:  # noqa: BLE001 - a renewer must never die silently mid-run
                _log.exception("task %s: lease renewal crashed", self.task_id, extra=self._extra)
                self._mark_lost("lease renewal crashed")
                return

    def renew_once(self) -> bool:
        """One renewal; False if refused or failed (the local deadline decides when a
        failure is fatal, see ``lost``: until then the next tick may renew in time)."""
        if self.lost or self._released:
            return False
        expires = format_ts(self._clock() + timedelta(seconds=self.ttl))
        return self._rewrite("renew", expires_at=expires, renewals=self._renewals + 1)

    @property
    def _renewals(self) -> int:
        return self._record.value.renewals if self._record is not None else 0

    # -- release ----------------------------------------------------------------------

    def release(self, *, tombstone: bool = False) -> None:
        """Stop renewing and mark the lease released (unless it was lost or never held).

        Always call it, also after a failed ``acquire``: it stops the renewer thread.
        Idempotent: a second call (from any thread) is a no-op. ``tombstone`` (task
        deletion) leaves the lease *broken* instead, with ``floor`` at this epoch: the
        next holder takes it over at once and fences, and treats every object at or
        below the floor as left over from the deleted task.
        """
        with self._release_lock:
            if self._released:
                return
            lost = self.lost  # before _released: it includes the local deadline
            self._released = True
            self._stop.set()
            if self._renewer is not None:
                # A renewal may hang on a stalled connection: wait for it no longer than
                # the margin; the lease then simply expires, nothing of ours at risk.
                self._renewer.join(min(self.options.margin, 5.0))
                if self._renewer.is_alive():
                    return
            if self._record is None or lost:
                return
            if tombstone:
                update = {"expires_at": BROKEN_EXPIRY, "holder": f"deleted by {self.holder}"}
                self._rewrite("delete", floor=self.epoch, **update)
            else:
                self._rewrite("release", released=True, expires_at=format_ts(self._clock()))

    def raise_epoch(self, epoch: int) -> None:
        """Move our own lease to ``epoch`` (above every stored object's): ``LeaseLost``
        if refused. For a lease that had to be created on a task that already had one."""
        if not self._rewrite("raise", epoch=epoch):
            self.check()
            raise LeaseLost(f"{self.label}: could not raise the lease to epoch {epoch}")
        self.epoch = epoch

    def _rewrite(self, what: str, **update: object) -> bool:
        """Replace our own lease record with ``update`` applied; False if refused/failed."""
        with self._write_lock:
            record = self._record
            if record is None:
                return False
            sent = self._monotonic()
            try:
                new = record.value.model_copy(update=update)
                self._record = self._store.write_lease(new, replaces=record, key=self.key)
            except Conflict as exc:
                now = exc.current.value.holder if isinstance(exc.current, Record) else "?"
                self._mark_lost(f"{what} refused: the lease is now held by {now!r}")
                return False
            except EleanorError as exc:
                # The lease simply expires later; nothing this holder wrote is at risk.
                _log.warning(
                    "task %s: could not %s the lease: %s",
                    self.task_id,
                    what,
                    exc,
                    extra=self._extra,
                )
                return False
            self._held_until(sent)
            return True
