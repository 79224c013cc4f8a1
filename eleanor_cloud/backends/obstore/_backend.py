"""ObstoreBackend: one obstore store, one request per operation (see the package
docstring for the requests and what their failures mean)."""

from __future__ import annotations

import random
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import obstore
from obstore import exceptions as obx

from eleanor_cloud.backends.base import Create, Overwrite, Replace, Version, WriteMode
from eleanor_cloud.backends.obstore._kinds import kind_of
from eleanor_cloud.backends.obstore._options import (
    check_key,
    configured_endpoint,
    same_process,
)
from eleanor_cloud.backends.obstore._probe import (
    PROBE_BODY,
    PROBE_NAME,
    ConditionsVerdict,
    refusal,
    remember,
    run_probe,
    unsafe_warning,
    verdict_for,
)
from eleanor_cloud.errors import (
    BackendError,
    ConfigurationError,
    EleanorError,
    InvalidKey,
    NotFound,
    NotSupported,
)

if TYPE_CHECKING:
    from obstore import PutMode

    from eleanor_cloud.backends.obstore._local import LocalCas

# Imported where first needed, not here: this module is on a Lambda cold start's path,
# and the error table (_errors: its patterns), the local directory's lock protocol
# (_local) and the listing (_list) are not, for a store whose writes all succeed.

__all__ = ["DEFAULT_CONFLICT_RETRIES", "ObstoreBackend"]

DEFAULT_CONFLICT_RETRIES = 4
_CONFLICT_BACKOFF_BASE = 0.05
_CONFLICT_BACKOFF_CAP = 1.0
# A GET whose body broke after the headers arrived is reported once the body is read,
# outside obstore's retries; reading is idempotent, so it is retried this many times.
_BODY_RETRIES = 2
# S3's answer when another conditional write to the key is in flight (retried here).
_CONDITIONAL_CONFLICT = "ConditionalRequestConflict"
_ERRORS = (obx.BaseError, OSError, ValueError)


class ObstoreBackend:
    """Objects in one bucket, container or directory, through an obstore store.

    ``store`` is an ``obstore.store.S3Store``, ``GCSStore``, ``AzureStore``,
    ``LocalStore`` or ``MemoryStore``, used as is (build one with
    :func:`~eleanor_cloud.backends.obstore.from_url`, which sets this library's time
    bounds, or yourself). ``endpoint`` names where requests go, for messages and the
    probe's per-endpoint verdict (default: from the store's config and environment).

    Before its first conditional write to S3, GCS or Azure the backend checks, once per
    process for its endpoint and bucket, that the endpoint honours conditions
    (:mod:`._probe`, on ``<probe_prefix>/_probe/conditions.json``). If it does not,
    writes raise ``NotSupported``; with ``unsafe_unconditional=True`` they go ahead with
    an ``UnsafeBackendWarning`` (UNSAFE with two writers). ``conflict_retries`` bounds
    the retries of S3's 409 ConditionalRequestConflict, waiting with ``sleep``.

    Creating the backend makes no request.
    """

    def __init__(
        self,
        store: Any,
        *,
        endpoint: str | None = None,
        probe_prefix: str = "",
        unsafe_unconditional: bool = False,
        conflict_retries: int = DEFAULT_CONFLICT_RETRIES,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._store = store
        self._kind = kind_of(store)
        config: dict[str, Any] = dict(getattr(store, "config", None) or {})
        if self._kind.scheme == "file":
            root = store.prefix
            if root is None:
                raise ConfigurationError(
                    "a LocalStore needs a directory (LocalStore(prefix=...))",
                    operation="open_store",
                )
            from eleanor_cloud.backends.obstore._local import LocalCas

            self._bucket = Path(root).as_posix()
            self._local: LocalCas | None = LocalCas(store, Path(root), self._where())
        else:
            self._local = None
            self._bucket = str(config.get(self._kind.bucket_key) or "") or "memory"
        # The probe's verdict is per endpoint: two endpoints may have a bucket of one name.
        self._endpoint: str = (
            endpoint or configured_endpoint(self._kind.scheme, config) or self._kind.endpoint
        )
        if not isinstance(probe_prefix, str):
            raise ConfigurationError(
                f"probe_prefix must be a str, got {probe_prefix!r}", operation="open_store"
            )
        base = probe_prefix.strip("/")
        try:
            self._probe_key = check_key(f"{base}/{PROBE_NAME}" if base else PROBE_NAME)
        except InvalidKey as exc:
            raise InvalidKey(probe_prefix, exc.rule, field="prefix") from exc
        if not isinstance(conflict_retries, int) or conflict_retries < 0:
            raise ConfigurationError(
                f"conflict_retries must be a non-negative int, got {conflict_retries!r}",
                operation="open_store",
            )
        self._conflict_retries = conflict_retries
        self._sleep = sleep
        self._unsafe = bool(unsafe_unconditional)
        # Only object stores are probed: the local directory writes under our own lock,
        # and obstore's MemoryStore is a map in this process, with no endpoint between.
        self._conditions_checked = self._kind.scheme in ("file", "memory")
        self._conditions_lock = threading.Lock()
        self._ignores_conditions = False

    def _where(self) -> str:
        if self._kind.scheme == "file":
            return f"obstore+file://{self._bucket}"
        if self._kind.scheme == "memory":
            return "obstore+memory://"
        return f"obstore+{self._kind.scheme}://{self._bucket}"

    def __repr__(self) -> str:
        return f"ObstoreBackend({self.description})"

    @property
    def description(self) -> str:
        """``obstore+s3://bucket`` (the URL form that opens it), flagged UNSAFE when
        writing to an endpoint that ignores conditions with ``unsafe_unconditional``."""
        if self._ignores_conditions:
            return f"{self._where()} (UNSAFE: the endpoint ignores conditional writes)"
        return self._where()

    @property
    def store(self) -> Any:
        """The obstore store in use."""
        return self._store

    @property
    def bucket(self) -> str:
        """The bucket or container name (the directory for a LocalStore)."""
        return self._bucket

    @property
    def endpoint(self) -> str:
        """Where requests go (the probe's verdict is per endpoint and bucket)."""
        return self._endpoint

    @property
    def probe_key(self) -> str:
        """Where the conditional-write probe writes (never a task's key)."""
        return self._probe_key

    def probe_conditions(self) -> ConditionsVerdict:
        """Ask the endpoint now, with two or three conditional PUTs, whether it honours
        conditions; the answer replaces the process's cached verdict."""
        same_process()
        verdict = self._probe()
        remember(verdict)
        return verdict

    # -- protocol ----------------------------------------------------------------------

    def read(self, key: str) -> tuple[bytes, Version]:
        """One GET: the body and its version; ``NotFound`` if absent."""
        check_key(key)
        same_process()
        if self._local is not None:
            try:
                return self._local.read(key)
            except EleanorError:
                raise
            except _ERRORS as exc:
                raise self._translate(exc, key, "read") from exc
        for attempt in range(_BODY_RETRIES + 1):
            try:
                result = obstore.get(self._store, key)
            except _ERRORS as exc:
                raise self._translate(exc, key, "read") from exc
            try:
                data = bytes(result.bytes())
            except _ERRORS as exc:
                if attempt < _BODY_RETRIES:
                    continue
                raise self._translate(exc, key, "read") from exc
            return data, self._version(result.meta, key, "read")
        raise AssertionError("unreachable")  # pragma: no cover

    def write(self, key: str, data: bytes, mode: WriteMode) -> Version:
        """One PUT, conditional per ``mode``; the new version."""
        check_key(key)
        same_process()
        body = bytes(data)
        expected: str | None = None
        put_mode: PutMode
        match mode:
            case Create():
                operation, put_mode = "create", "create"
            case Replace(version=version):
                operation, expected = "replace", version.token
                # S3/Azure: {"e_tag": ...}; GCS: {"version": <generation>} (local: _local).
                put_mode = cast("PutMode", {self._kind.token: expected})
            case Overwrite():
                operation, put_mode = "overwrite", "overwrite"
            case _:
                raise ConfigurationError(f"unknown write mode {mode!r}", key=key)
        if self._local is not None:
            return self._write_local(key, body, operation, expected)
        if operation != "overwrite":
            self._require_conditions(key, operation)
        result = self._put(key, body, put_mode, operation, expected)
        return self._version(result, key, operation)

    def delete(self, key: str, if_version: Version | None = None) -> None:
        """One DELETE, unconditional; ``NotSupported`` with ``if_version``."""
        check_key(key)
        same_process()
        if if_version is not None:
            raise NotSupported(
                "conditional delete",
                self.description,
                detail="obstore deletes unconditionally (object_store has no delete "
                "precondition); nothing was deleted",
            )
        try:
            if self._local is not None:
                self._local.delete(key)
            else:
                obstore.delete(self._store, key)
        except EleanorError:
            raise
        except _ERRORS as exc:
            error = self._translate(exc, key, "delete")
            if type(error) is NotFound:
                return  # Azure answers 404 for a missing blob: deleting nothing is done
            raise error from exc

    def list(self, prefix: str, delimiter: str | None = None) -> Iterator[str]:
        """Keys under ``prefix`` in lexicographic order; ``/`` roll-up via obstore's
        ``list_with_delimiter``."""
        if not isinstance(prefix, str):
            raise InvalidKey(prefix, f"must be a str, not {type(prefix).__name__}", field="prefix")
        same_process()
        from eleanor_cloud.backends.obstore._list import list_keys

        return list_keys(
            self._store, self._local, prefix, delimiter, self._where(), self._translate
        )

    # -- internals ---------------------------------------------------------------------

    def _write_local(self, key: str, body: bytes, operation: str, expected: str | None) -> Version:
        assert self._local is not None
        try:
            if operation == "create":
                return self._local.create(key, body)
            return self._local.replace(key, body, Version(expected) if expected else None)
        except EleanorError:
            raise
        except _ERRORS as exc:
            raise self._translate(exc, key, operation, expected) from exc

    def _put(
        self, key: str, body: bytes, put_mode: PutMode, operation: str, expected: str | None
    ) -> Any:
        try:
            return self._send(key, body, put_mode)
        except _ERRORS as exc:
            raise self._translate(exc, key, operation, expected) from exc

    def _send(self, key: str, body: bytes, put_mode: PutMode) -> Any:
        """One PUT (no multipart upload: conditional modes never use one, and for a small
        object it would be several requests), retrying S3's 409 ConditionalRequestConflict
        with jittered backoff; obstore's own error otherwise."""
        attributes: Any = {"Content-Type": "application/json"} if key.endswith(".json") else None
        for attempt in range(self._conflict_retries + 1):
            try:
                return obstore.put(
                    self._store,
                    key,
                    body,
                    mode=put_mode,
                    use_multipart=False,
                    attributes=attributes,
                )
            except _ERRORS as exc:
                if attempt < self._conflict_retries and _CONDITIONAL_CONFLICT in str(exc):
                    cap = min(_CONFLICT_BACKOFF_CAP, _CONFLICT_BACKOFF_BASE * 2**attempt)
                    self._sleep(random.uniform(0, cap))
                    continue
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _version(self, found: Any, key: str, operation: str) -> Version:
        token = found.get(self._kind.token) if self._kind.token else None
        if not token:
            raise BackendError(
                f"{self._where()}/{key}: {operation} returned no {self._kind.token or 'version'}"
                " to compare-and-swap with",
                key=key,
                operation=operation,
            )
        return Version(str(token))

    def _translate(
        self, exc: BaseException, key: str | None, operation: str, expected: str | None = None
    ) -> EleanorError:
        from eleanor_cloud.backends.obstore._errors import translate

        return translate(
            exc,
            scheme=self._kind.scheme,
            bucket=self._bucket,
            key=key,
            operation=operation,
            expected=expected,
        )

    def _require_conditions(self, key: str, operation: str) -> None:
        """Refuse to write conditionally to an endpoint that ignores conditions."""
        if self._conditions_checked:
            return
        with self._conditions_lock:
            if self._conditions_checked:
                return
            try:
                verdict = verdict_for(self._endpoint, self._store_name(), self._probe)
            except EleanorError as exc:
                cause = exc.__cause__
                if cause is None or not isinstance(cause, _ERRORS):
                    raise
                from eleanor_cloud.backends.obstore._errors import annotate

                # Reported for the write the caller asked for: the probe is its first step.
                error = self._translate(cause, key, operation)
                raise annotate(
                    error, f"(in the conditional-write probe on {self._probe_key!r} first)"
                ) from cause
            if not verdict.honoured:
                if not self._unsafe:
                    raise refusal(verdict)
                # The fsspec package is where the one unsafe-backend warning class lives
                # (it imports no fsspec at module level), so one filter covers all paths.
                from eleanor_cloud.backends.fsspec import UnsafeBackendWarning

                self._ignores_conditions = True
                warnings.warn(unsafe_warning(verdict), UnsafeBackendWarning, stacklevel=4)
            self._conditions_checked = True

    def _probe(self) -> ConditionsVerdict:
        return run_probe(
            self._probe_put, endpoint=self._endpoint, bucket=self._store_name(), key=self._probe_key
        )

    def _store_name(self) -> str:
        # ``s3://bucket``: how messages name it, and with the endpoint the probe cache's key.
        return f"{self._kind.scheme}://{self._bucket}"

    def _probe_put(self, create: bool) -> bool:
        """One probe PUT; False if the store refused it on its condition."""
        put_mode = cast("PutMode", "create" if create else {self._kind.token: self._kind.stale})
        try:
            self._send(self._probe_key, PROBE_BODY, put_mode)
        except (obx.AlreadyExistsError, obx.PreconditionError, obx.NotModifiedError):
            # Refused (412; 409 on a create; a compare-and-swap of a missing object): the
            # store evaluated the condition and did not write. Told apart here, without
            # the error table, because a healthy probe's refusals are the cold path.
            return False
        except _ERRORS as exc:
            operation = "create" if create else "replace"
            raise self._translate(exc, self._probe_key, operation, self._kind.stale) from exc
        return True
