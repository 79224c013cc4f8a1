"""Does the endpoint honour conditional writes? Asked once per process, endpoint and bucket.

Some S3-compatible stores accept ``If-None-Match`` / ``If-Match`` and ignore them, and a
proxy on the way can strip them: then every create "wins" and every compare-and-swap
"succeeds", two hosts both run a stage, and nothing says so. Before its first
conditional write an :class:`~eleanor_cloud.backends.s3.S3Backend` asks, with
:data:`PROBE_REQUESTS` PutObject requests on ``<prefix>/_probe/conditions.json``:

1. ``If-None-Match: *``: created, or refused because an earlier probe left it there;
2. ``If-None-Match: *`` again, only if step 1 created it: the object exists now, so
   this must be refused (412). A refusal in step 1 already proved that the store
   evaluates ``If-None-Match`` (a store that ignores it would have accepted), so every
   cold start after the first on a prefix pays 2 PUTs, not 3;
3. ``If-Match`` with an ETag the object never had: must be refused (412).

Every probe write is conditional, so a bucket policy that refuses unconditional PUTs
lets them through, and the probe never deletes. It reuses one key per prefix instead of
one per process: runners have no ``s3:DeleteObject``, so per-process keys would pile up
one object per cold start. Reuse costs nothing in rigour: an endpoint that ignores
``If-None-Match`` accepts step 2 whether the object is new or years old. The object is a
few dozen bytes; a lifecycle rule may expire it (the next probe creates it again). Task
ids cannot start with ``_``, so the key is never part of a task.

The verdict is cached in this module for the life of the process. That is module-level
state on purpose: it holds a fact about the endpoint (it evaluates conditions or it does
not), not a version of any object, so every backend on that endpoint and bucket may
share it, and a new backend per Lambda invocation does not pay the probe again. A probe
that fails (``Unavailable``, ``AccessDenied``...) caches nothing: the write that asked
raises that error and the next write asks again.

A deployment that has checked its endpoint (``eleanor-cloud check --store URL``, run
against the endpoint URL and bucket its runners use) may say so in
``ELEANOR_CONDITIONS_VERIFIED`` (``<endpoint-url>/<bucket>`` entries, e.g.
``https://s3.eu-west-1.amazonaws.com/my-bucket``): a backend whose endpoint and bucket
are listed exactly sends no probe and logs, at INFO on ``eleanor_cloud.backends.s3``,
that it took the environment's word. That is the caller opting out by name, per
endpoint and bucket; anything else (another bucket, another endpoint, a proxy in
between) is probed as usual.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from eleanor_cloud.backends._verdicts import VerdictCache
from eleanor_cloud.errors import NotSupported

__all__ = [
    "PROBE_NAME",
    "PROBE_REQUESTS",
    "STALE_ETAG",
    "ConditionsVerdict",
    "cached_verdict",
    "clear_probe_cache",
    "refusal",
    "remember",
    "run_probe",
    "unsafe_warning",
    "verdict_for",
    "verified_by_env",
]

PROBE_NAME = "_probe/conditions.json"
# At most; 2 once the probe object exists (every cold start after the first per prefix).
PROBE_REQUESTS = 3
# An ETag no object ever has (S3's are quoted MD5 hex or "<hex>-<parts>"; the probe
# body's MD5 is not all zeros): a stale If-Match a conforming store must refuse.
STALE_ETAG = '"00000000000000000000000000000000"'
PROBE_BODY = b'{"eleanor_cloud": "conditional-write probe; safe to delete"}\n'

# A put of the probe body with these conditions (``IfNoneMatch`` / ``IfMatch``):
# True if the store accepted it, False if it refused it as a failed precondition.
ProbePut = Callable[[dict[str, str]], bool]


@dataclass(frozen=True, slots=True)
class ConditionsVerdict:
    """What the probe found: whether each conditional header was honoured."""

    endpoint: str
    bucket: str
    key: str
    create_honoured: bool
    replace_honoured: bool

    @property
    def honoured(self) -> bool:
        """Both conditions were honoured: conditional writes are safe here."""
        return self.create_honoured and self.replace_honoured

    @property
    def where(self) -> str:
        return f"s3://{self.bucket} at {self.endpoint}"

    def ignored(self) -> str:
        """What was ignored, for messages (``""`` when nothing was)."""
        parts = []
        if not self.create_honoured:
            parts.append("If-None-Match: * (a second create of an existing object was accepted)")
        if not self.replace_honoured:
            parts.append("If-Match (a PUT naming an ETag the object never had was accepted)")
        return " and ".join(parts)


def run_probe(put: ProbePut, *, endpoint: str, bucket: str, key: str) -> ConditionsVerdict:
    """The two or three conditional PUTs (see the module docstring); errors propagate."""
    # Created now (then ask again), or refused because an earlier probe left it there.
    create_refused = not put({"IfNoneMatch": "*"}) or not put({"IfNoneMatch": "*"})
    replace_refused = not put({"IfMatch": STALE_ETAG})
    return ConditionsVerdict(endpoint, bucket, key, create_refused, replace_refused)


# Where a deployment may say the probe was already answered (by ``eleanor-cloud check``
# against the same endpoint and bucket): entries ``<endpoint-url>/<bucket>``, separated
# by commas or whitespace. Only exact entries count: a typo, another bucket or another
# endpoint (a proxy in front of it is another endpoint URL) probes as usual.
VERIFIED_ENV = "ELEANOR_CONDITIONS_VERIFIED"


def verified_by_env(endpoint: str, bucket: str) -> bool:
    """Whether :data:`VERIFIED_ENV` names this endpoint and bucket."""
    value = os.environ.get(VERIFIED_ENV)
    if not value:
        return False
    wanted = f"{endpoint.rstrip('/')}/{bucket}"
    return wanted in value.replace(",", " ").split()


_CACHE: VerdictCache[ConditionsVerdict] = VerdictCache()
cached_verdict = _CACHE.get
remember = _CACHE.remember
verdict_for = _CACHE.verdict_for
clear_probe_cache = _CACHE.clear


def refusal(verdict: ConditionsVerdict) -> NotSupported:
    """The error a write raises on an endpoint that ignores conditions."""
    operations = []
    if not verdict.create_honoured:
        operations.append("create-if-absent")
    if not verdict.replace_honoured:
        operations.append("compare-and-swap")
    return NotSupported(
        " and ".join(operations),
        verdict.where,
        detail=f"the endpoint ignores {verdict.ignored()} (probe object {verdict.key!r}), so "
        "two hosts could both run the same stage and neither would know. Use an endpoint "
        "that honours conditional writes (AWS S3 does), or pass unsafe_unconditional=True "
        "to write anyway (UNSAFE with two writers)",
    )


def unsafe_warning(verdict: ConditionsVerdict) -> str:
    """The ``UnsafeBackendWarning`` text when the caller opted out of the refusal."""
    return (
        f"{verdict.where}: opened with unsafe_unconditional=True and the endpoint ignores "
        f"{verdict.ignored()}; writes are not atomic, so two concurrent writers can both "
        "win a create or lose an update"
    )
