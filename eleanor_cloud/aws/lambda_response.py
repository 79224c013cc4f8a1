"""The Lambda handler's response body: per-stage status, a pointer to the results, and
a size bound that holds whatever the task.

Results are never embedded: a stage result can be any size, a Lambda response is
limited to 6 MB and a Step Functions payload to 256 KiB. :func:`bounded_response` cuts
deterministically to :data:`RESPONSE_BUDGET_BYTES` (the handler's docstring describes
the shape and the order in which things are cut); the loop's own fields pass through
uncut, because the state machine cannot run without them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from eleanor_cloud.keys import task_prefix

if TYPE_CHECKING:
    from eleanor_cloud.engine import StageSummary, TaskSummary
    from eleanor_cloud.store import StateStore

__all__ = [
    "MESSAGE_MAX_BYTES",
    "POINTER_MAX_BYTES",
    "RESPONSE_BUDGET_BYTES",
    "STAGE_MESSAGE_MAX_BYTES",
    "bounded_response",
    "clip",
    "json_size",
    "results_pointer",
]

_log = logging.getLogger("eleanor_cloud.aws")

# The response's size bound, as len(json.dumps(response)). Step Functions refuses a
# task result over 256 KiB (States.DataLimitExceeded) and Lambda one over 6 MB; an
# eighth of the smaller limit leaves the state machine room for its own input and
# keeps the execution history readable, and still shows about a hundred stages in full.
RESPONSE_BUDGET_BYTES = 32 * 1024
# A stop reason or failure text can be any size (an exception's str); these caps keep
# a few of them from eating the budget the stage table needs.
MESSAGE_MAX_BYTES = 2048
STAGE_MESSAGE_MAX_BYTES = 256
# A pointer longer than this (a local store under a very deep directory) is dropped
# rather than clipped: half a URL points nowhere. S3 keys are at most 1024 bytes.
POINTER_MAX_BYTES = 8192
# Room kept for the "truncated" notes, which are filled in after the lists are cut.
_NOTES_RESERVE = 256


def json_size(value: Any) -> int:
    """What the budget counts: ASCII-escaped JSON, never shorter than its UTF-8."""
    return len(json.dumps(value))


def clip(text: str, max_bytes: int) -> tuple[str, bool]:
    """``text`` cut so that its JSON string body is at most ``max_bytes``; whether cut.

    Cut by escaped size, not characters: a control or non-ASCII character costs up
    to 12 bytes escaped. A clipped text ends with how long the original was.
    """
    if json_size(text) - 2 <= max_bytes:
        return text, False
    marker = f" [... {len(text)} characters in all]"
    room = max(0, max_bytes - len(marker))
    # The escaped size of a prefix grows with its length: bisect for the longest fit.
    lo, hi = 0, min(len(text), room)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if json_size(text[:mid]) - 2 <= room:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo] + marker, True


def _no_pointer(final_stage: str | None) -> dict[str, Any]:
    return {
        "store_url": None,
        "task_prefix": None,
        "final_stage": final_stage,
        "final_key": None,
        "final_url": None,
    }


def results_pointer(
    store: StateStore | None, task_id: str, final_stage: str | None
) -> dict[str, Any]:
    """Where the results are: the store, the task's prefix, the final stage's object.

    ``None`` fields when there is no store to describe (``store`` is ``None``).
    """
    pointer = _no_pointer(final_stage)
    if store is None:
        return pointer
    try:
        where = str(store.backend.description)
        prefix = str(store.prefix)
        pointer["store_url"] = f"{where}/{prefix}" if prefix else where
        pointer["task_prefix"] = task_prefix(prefix, task_id)
        if final_stage is not None:
            pointer["final_key"] = str(store.stage_key(task_id, final_stage))
            pointer["final_url"] = f"{where}/{pointer['final_key']}"
    except (AttributeError, TypeError) as exc:
        # A backend without a usable description. The work is done and checkpointed:
        # a store we cannot describe costs the pointer, not the invocation.
        _log.warning("task %s: cannot describe the store: %s", task_id, exc)
        return _no_pointer(final_stage)
    return pointer


def _stage_entry(stage: StageSummary, notes: dict[str, Any]) -> dict[str, Any]:
    message = stage.last_message
    if message is not None:
        message, cut = clip(str(message), STAGE_MESSAGE_MAX_BYTES)
        if cut:
            notes["stage_messages"] = notes.get("stage_messages", 0) + 1
    return {
        "name": stage.name,
        "status": stage.status.value,
        "attempts": stage.attempts,
        "last_run_seconds": stage.last_run_seconds,
        "last_message": message,
        "has_result": stage.result is not None,
    }


def _window(sizes: list[int], start: int, room: int) -> tuple[int, int]:
    """The contiguous ``[lo, hi)`` around ``start`` whose ``sizes`` fit in ``room``:
    forward from ``start`` first, then backward from it once the end is reached."""
    lo = hi = start
    used = 0
    while hi < len(sizes) and used + sizes[hi] <= room:
        used += sizes[hi]
        hi += 1
    while hi == len(sizes) and lo > 0 and used + sizes[lo - 1] <= room:
        used += sizes[lo - 1]
        lo -= 1
    return lo, hi


def bounded_response(
    summary: TaskSummary,
    *,
    loop: Mapping[str, Any],
    stages_run: list[str],
    pointer: dict[str, Any],
    invocation: dict[str, Any],
    budget: int = RESPONSE_BUDGET_BYTES,
) -> dict[str, Any]:
    """The handler's response for ``summary``: no results, at most ``budget`` bytes.

    ``loop`` holds the fields the state machine reads besides the summary's own
    (``wait_seconds``, ``lease_held``, ``lease_watch``); they are never cut. See the
    handler's docstring for the shape and how it is cut to fit.
    """
    from eleanor_cloud.models import StageStatus

    notes: dict[str, Any] = {}
    original = summary.message or ""
    message, cut = clip(original, MESSAGE_MAX_BYTES)
    if cut:
        notes["message"] = len(original)
    if json_size(pointer) > POINTER_MAX_BYTES:
        pointer = _no_pointer(pointer.get("final_stage"))
        notes["results"] = "store location too long to report"
    counts: dict[str, int] = {}
    for stage in summary.stages:
        counts[stage.status.value] = counts.get(stage.status.value, 0) + 1
    response: dict[str, Any] = {
        "task_id": summary.task_id,
        "status": summary.status.value,
        "done": summary.done,
        "next_stage": summary.next_stage,
        **loop,
        "message": message,
        "stages": [],
        "stage_counts": counts,
        "stages_run": [],
        "results": {**pointer, "has_final_result": summary.result is not None},
        "truncated": notes,
        "invocation": invocation,
    }
    entries = [_stage_entry(stage, notes) for stage in summary.stages]
    response["stages"], response["stages_run"] = entries, list(stages_run)
    if json_size(response) <= budget:
        return response

    # Too big: cut deterministically, then fill in the notes.
    response["stages"], response["stages_run"] = [], []
    room = budget - json_size(response) - _NOTES_RESERVE
    kept_run: list[str] = []
    used = 0
    for name in stages_run:
        if used + json_size(name) + 2 > room // 4:
            break
        kept_run.append(name)
        used += json_size(name) + 2
    if len(kept_run) < len(stages_run):
        notes["stages_run"] = {"total": len(stages_run), "shown": len(kept_run)}
    room -= used
    start = next(
        (i for i, s in enumerate(summary.stages) if s.status is not StageStatus.COMPLETE),
        len(entries),
    )
    # Each entry costs its JSON and a ", " separator (the first one's is slack).
    lo, hi = _window([json_size(e) + 2 for e in entries], start, room)
    if (lo, hi) != (0, len(entries)):
        # The messages are what can be spared first: more stages fit without them.
        messages = sum(1 for e in entries if e["last_message"])
        entries = [{**e, "last_message": None} for e in entries]
        if messages:
            notes["stage_messages"] = messages
        lo, hi = _window([json_size(e) + 2 for e in entries], start, room)
    if (lo, hi) != (0, len(entries)):
        notes["stages"] = {"total": len(entries), "offset": lo, "shown": hi - lo}
    response["stages"], response["stages_run"] = entries[lo:hi], kept_run
    if json_size(response) > budget:
        # Unreachable with the caps above (the fixed part is a few KiB at most); kept
        # so that no input can ever produce a response Step Functions refuses.
        response["stages"], response["stages_run"], response["message"] = [], [], ""
        notes["stages"] = {"total": len(entries), "offset": 0, "shown": 0}
        notes["stages_run"] = {"total": len(stages_run), "shown": 0}
        notes["message"] = len(original)
    return response
