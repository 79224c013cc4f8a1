"""Does the endpoint honour conditional writes? Asked once per process, endpoint and bucket.

The same probe as the boto3 backend's (``eleanor_cloud.backends.s3._probe``), written
again here because that package imports boto3, whose import is most of the cold start
this backend exists to save. Some S3-compatible stores accept ``If-None-Match`` /
``If-Match`` and ignore them, and a proxy on the way can strip them: every create then
"wins" and every compare-and-swap "succeeds", and two hosts both run a stage. Before
its first conditional write an :class:`~eleanor_cloud.backends.obstore.ObstoreBackend`
on S3, GCS or Azure sends :data:`PROBE_REQUESTS` conditional PUTs to
``<prefix>/_probe/conditions.json`` (the key the boto3 backend probes, so the two
share one object):

1. create: succeeds, or is refused because an earlier probe left the object there;
2. create again, only if step 1 succeeded: the object exists now, so this must be
   refused (a refusal in step 1 already proved the store evaluates ``If-None-Match``:
   a store that ignores it would have accepted, so every cold start after the first
   on a prefix pays 2 PUTs, not 3);
3. compare-and-swap naming a version the object never had: must be refused.

Every probe write is conditional (a bucket policy that refuses unconditional PUTs lets
it through) and the probe never deletes; reusing one key costs nothing in rigour (an
endpoint that ignores ``If-None-Match`` accepts step 2 whether the object is new or
old). The verdict is a fact about the endpoint, not a version of any object, so it is
cached for the process; a probe that fails (``Unavailable``...) caches nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from eleanor_cloud.backends._verdicts import VerdictCache
from eleanor_cloud.errors import NotSupported

__all__ = [
    "PROBE_NAME",
    "PROBE_REQUESTS",
    "ConditionsVerdict",
    "clear_probe_cache",
    "refusal",
    "remember",
    "run_probe",
    "unsafe_warning",
    "verdict_for",
]

PROBE_NAME = "_probe/conditions.json"
# At most; 2 once the probe object exists (every cold start after the first per prefix).
PROBE_REQUESTS = 3
PROBE_BODY = b'{"eleanor_cloud": "conditional-write probe; safe to delete"}\n'

# ``put(create)``: True if the store wrote, False if it refused on the condition.
# ``create`` True asks for create-if-absent; False for a compare-and-swap naming a
# version the object never had.
ProbePut = Callable[[bool], bool]


class ConditionsVerdict(NamedTuple):
    """What the probe found: whether each condition was honoured.

    A NamedTuple (immutable, compared by value) rather than a dataclass: it is built at
    import on the cold-start path, where a dataclass costs a few times as much.
    """

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
        return f"{self.bucket} at {self.endpoint}"

    def ignored(self) -> str:
        """What was ignored, for messages (``""`` when nothing was)."""
        parts = []
        if not self.create_honoured:
            parts.append("create-if-absent (a second create of an existing object was accepted)")
        if not self.replace_honoured:
            parts.append(
                "compare-and-swap (a write naming a version the object never had was accepted)"
            )
        return " and ".join(parts)


def run_probe(put: ProbePut, *, endpoint: str, bucket: str, key: str) -> ConditionsVerdict:
    """The two or three conditional PUTs (see the module docstring); errors propagate."""
    # Created now (then ask again), or refused because an earlier probe left it there.
    create_refused = not put(True) or not put(True)
    replace_refused = not put(False)
    return ConditionsVerdict(endpoint, bucket, key, create_refused, replace_refused)


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
        detail=f"the endpoint ignores {verdict.ignored()} (probe object {verdict.key!r}), "
        "so two hosts could both run the same stage and neither would know. Use an "
        "endpoint that honours conditional writes, or pass unsafe_unconditional=True to "
        "write anyway (UNSAFE with two writers)",
    )


def unsafe_warning(verdict: ConditionsVerdict) -> str:
    """The ``UnsafeBackendWarning`` text when the caller opted out of the refusal."""
    return (
        f"{verdict.where}: opened with unsafe_unconditional=True and the endpoint ignores "
        f"{verdict.ignored()}; writes are not atomic, so two concurrent writers can both "
        "win a create or lose an update"
    )
