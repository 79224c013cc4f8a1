"""Key layout and validation: no input can produce a key outside ``<prefix>/``.

Layout::

    <prefix>/<task_id>/<stage_name>.json   one per stage
    <prefix>/<task_id>/_task.json          the task manifest
    <prefix>/<task_id>/_lease.json         the exclusive-execution lease

Task ids and stage names are single safe path segments: letters, digits, ``.``, ``_``
and ``-``; never ``..``; never starting with ``.`` or ``_`` (so they cannot collide
with ``_task``/``_lease`` or be hidden files). They are validated before any I/O.
"""

from __future__ import annotations

import re

from eleanor_cloud.errors import InvalidKey
from eleanor_cloud.models import STAGE_NAME_MAX_LENGTH

__all__ = [
    "LEASE_NAME",
    "MANIFEST_NAME",
    "TASK_ID_MAX_LENGTH",
    "failed_chunk_key",
    "is_valid_task_id",
    "join_prefix",
    "lease_key",
    "manifest_key",
    "normalize_prefix",
    "progress_key",
    "stage_key",
    "stage_name_from_key",
    "task_prefix",
    "validate_shard_id",
    "validate_stage_name",
    "validate_task_id",
]

# S3 keys may be 1024 bytes and file names 255: a task id of 200 plus a 150-character
# stage name and a prefix still fits both.
TASK_ID_MAX_LENGTH = 200
SHARD_ID_MAX_LENGTH = 100
MANIFEST_NAME = "_task.json"
LEASE_NAME = "_lease.json"
SUFFIX = ".json"
_SAFE = re.compile(r"[A-Za-z0-9._-]+")
_PREFIX_SEGMENT = re.compile(r"[A-Za-z0-9._=-]+")


def _validate_segment(value: object, field: str, max_length: int) -> str:
    if not isinstance(value, str):
        raise InvalidKey(value, f"must be a str, not {type(value).__name__}", field=field)
    if not value:
        raise InvalidKey(value, "must not be empty", field=field)
    if len(value) > max_length:
        raise InvalidKey(
            value, f"must be at most {max_length} characters (got {len(value)})", field=field
        )
    if not _SAFE.fullmatch(value):
        raise InvalidKey(value, "may contain only letters, digits, '.', '_' and '-'", field=field)
    if ".." in value:
        raise InvalidKey(value, "must not contain '..'", field=field)
    if value[0] in "._":
        raise InvalidKey(value, "must not start with '.' or '_'", field=field)
    return value


def validate_task_id(task_id: object) -> str:
    """Return ``task_id`` if it is one safe path segment, else raise ``InvalidKey``."""
    return _validate_segment(task_id, "task_id", TASK_ID_MAX_LENGTH)


def is_valid_task_id(task_id: object) -> bool:
    """Whether ``task_id`` passes :func:`validate_task_id` (for filtering listings)."""
    try:
        validate_task_id(task_id)
    except InvalidKey:
        return False
    return True


def validate_stage_name(stage_name: object) -> str:
    """Return ``stage_name`` if it is one safe path segment, else raise ``InvalidKey``."""
    return _validate_segment(stage_name, "stage_name", STAGE_NAME_MAX_LENGTH)


def normalize_prefix(prefix: object) -> str:
    """Return the prefix without surrounding slashes; each segment must be safe.

    The empty prefix is allowed (objects at the root of the bucket or directory).
    """
    if not isinstance(prefix, str):
        raise InvalidKey(prefix, f"must be a str, not {type(prefix).__name__}", field="prefix")
    stripped = prefix.strip("/")
    if not stripped:
        return ""
    for segment in stripped.split("/"):
        if not segment:
            raise InvalidKey(prefix, "must not contain empty segments ('//')", field="prefix")
        if segment in (".", "..") or not _PREFIX_SEGMENT.fullmatch(segment):
            raise InvalidKey(
                prefix,
                f"segment {segment!r} may contain only letters, digits, '.', '_', '=' and '-'"
                " and must not be '.' or '..'",
                field="prefix",
            )
    return stripped


def join_prefix(prefix: str, rest: str) -> str:
    """Join an already-normalized prefix and a relative key."""
    return f"{prefix}/{rest}" if prefix else rest


def task_prefix(prefix: str, task_id: str) -> str:
    """The listing prefix of one task, ending with ``/``."""
    return join_prefix(prefix, validate_task_id(task_id) + "/")


def stage_key(prefix: str, task_id: str, stage_name: str) -> str:
    """``<prefix>/<task_id>/<stage_name>.json``."""
    return task_prefix(prefix, task_id) + validate_stage_name(stage_name) + SUFFIX


def manifest_key(prefix: str, task_id: str) -> str:
    """``<prefix>/<task_id>/_task.json``."""
    return task_prefix(prefix, task_id) + MANIFEST_NAME


def lease_key(prefix: str, task_id: str) -> str:
    """``<prefix>/<task_id>/_lease.json``."""
    return task_prefix(prefix, task_id) + LEASE_NAME


def validate_shard_id(shard_id: object) -> str:
    """A shard id: one safe segment, like a task id (``InvalidKey`` otherwise)."""
    return _validate_segment(shard_id, "shard_id", SHARD_ID_MAX_LENGTH)


def scope_prefix(prefix: str, task_id: str, stage_name: str, shard: str | None = None) -> str:
    """The folder of a stage's inner objects (``<task>/<stage>/``), or of one of its
    shards (``<task>/<stage>/shards/<id>/``)."""
    base = task_prefix(prefix, task_id) + validate_stage_name(stage_name) + "/"
    return base if shard is None else base + "shards/" + validate_shard_id(shard) + "/"


def progress_key(prefix: str, task_id: str, stage_name: str, shard: str | None = None) -> str:
    """``<scope>/progress.json``: a records stage's (or shard's) cursor and counts."""
    return scope_prefix(prefix, task_id, stage_name, shard) + "progress.json"


def failed_chunk_key(
    prefix: str, task_id: str, stage_name: str, name: str, shard: str | None = None
) -> str:
    """``<scope>/failed/<name>.jsonl``: one chunk of failed ids."""
    chunk = _validate_segment(name, "chunk name", 100)
    return scope_prefix(prefix, task_id, stage_name, shard) + f"failed/{chunk}.jsonl"


def plan_key(prefix: str, task_id: str, stage_name: str) -> str:
    """``<task>/<stage>/plan.json``: a fanned-out stage's shard plan, written once."""
    return scope_prefix(prefix, task_id, stage_name) + "plan.json"


def shard_state_key(prefix: str, task_id: str, stage_name: str, shard: str) -> str:
    """``<task>/<stage>/shards/<id>/state.json``: one shard's status and attempts."""
    return scope_prefix(prefix, task_id, stage_name, shard) + "state.json"


def shard_lease_key(prefix: str, task_id: str, stage_name: str, shard: str) -> str:
    """``<task>/<stage>/shards/<id>/_lease.json``: who may advance the shard."""
    return scope_prefix(prefix, task_id, stage_name, shard) + LEASE_NAME


def done_prefix(prefix: str, task_id: str, stage_name: str) -> str:
    """``<task>/<stage>/done/``: one marker per shard that ended (one LIST to count)."""
    return scope_prefix(prefix, task_id, stage_name) + "done/"


def done_key(prefix: str, task_id: str, stage_name: str, shard: str) -> str:
    return done_prefix(prefix, task_id, stage_name) + validate_shard_id(shard) + SUFFIX


# The task index (eleanor_cloud.store.index_markers): task ids never start with "_",
# so "_index" can be no task's folder.
INDEX_FOLDER = "_index"


def index_partition(prefix: str, status: str) -> str:
    """``<prefix>/_index/status/<STATUS>/``: one marker per task with that status."""
    return join_prefix(prefix, f"{INDEX_FOLDER}/status/{_validate_segment(status, 'status', 20)}/")


def index_marker_key(prefix: str, status: str, task_id: str) -> str:
    """``<prefix>/_index/status/<STATUS>/<task_id>``."""
    return index_partition(prefix, status) + validate_task_id(task_id)


def stage_name_from_key(key: str) -> str | None:
    """The stage name of a stage key, or ``None`` for manifests, leases and strangers."""
    name = key.rsplit("/", 1)[-1]
    if not name.endswith(SUFFIX):
        return None
    stem = name[: -len(SUFFIX)]
    try:
        return validate_stage_name(stem)
    except InvalidKey:
        return None
