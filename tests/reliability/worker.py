"""A worker process of the reliability campaign: run one task once, report the outcome.

``python -m tests.reliability.worker <spec.json>``; the outcome goes to
``<spec.json>.result`` (absent if the process was killed). Spec keys:

``store`` ({"kind": "local", "root"} or {"kind": "s3", "bucket", "endpoint"}),
``task_id``, ``stages``, ``effects`` (side-effect file), ``log`` (write log, optional),
``trigger`` (see :class:`~tests.reliability.harness.Trigger`, optional), ``gate``
({"ready", "go"}: touch ``ready``, then wait for ``go``, optional), ``lease_ttl``,
``wait_for_lease``, ``renew_interval``, ``clock_skew_tolerance``, ``max_attempts``,
``block_stage`` and ``block`` (hold one stage open, see ``EffectStage``).

Also: ``timeline`` (note side effects and engine events with ``time.monotonic``, see
``note_time``), ``poll_stage`` (with ``block`` and ``timeline``: that stage is a
``PollStage`` working until ``ctx.cancelled``), ``time_budget`` and ``lease_watch``
(``LeaseWatch.to_dict()``) passed to ``run()``; the result then has ``run_seconds``
(``time.monotonic`` around ``run()``) and, after ``LeaseHeld``, the ``watch`` to carry.
``stall`` (see :class:`~tests.reliability.harness.Stall`). ``mode``: ``run`` (default)
or ``delete``: ``delete_task`` once per entry of ``delete_waits`` (a
``wait_for_lease`` each) until one deletes.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from eleanor_cloud.engine import Backoff, EngineEvent, TaskEngine, delete_task
from eleanor_cloud.engine.lease_watch import LeaseWatch
from eleanor_cloud.errors import EleanorError, LeaseHeld, LeaseLost
from eleanor_cloud.models import StageStatus
from eleanor_cloud.store import StateStore
from tests.reliability.harness import (
    PREFIX,
    RecordingBackend,
    RelState,
    Stall,
    Trigger,
    make_stages,
    note_time,
    open_backend,
    wait_for,
)


def delete(spec: dict[str, Any], store: StateStore, timeline: Path | None) -> dict[str, Any]:
    """``delete_task`` with each wait in turn until it deletes; what each try said."""
    tries: list[str] = []
    for wait in spec["delete_waits"]:
        note_time(timeline, "delete_begins", wait=wait)
        try:
            count = delete_task(
                store,
                spec["task_id"],
                lease_ttl=spec.get("lease_ttl", 10.0),
                clock_skew_tolerance=spec.get("clock_skew_tolerance", 0.0),
                wait_for_lease=wait,
            )
        except LeaseHeld:
            tries.append("lease_held")
            continue
        note_time(timeline, "deleted", count=count)
        tries.append("deleted")
        return {"outcome": "deleted", "count": count, "tries": tries}
    return {"outcome": "lease_held", "tries": tries}


def main(spec_path: Path) -> None:
    spec = json.loads(spec_path.read_text())
    result_path = Path(f"{spec_path}.result")
    trigger = Trigger(**spec["trigger"]) if spec.get("trigger") else None
    stall = Stall(**spec["stall"]) if spec.get("stall") else None
    log = Path(spec["log"]) if spec.get("log") else None
    timeline = Path(spec["timeline"]) if spec.get("timeline") else None
    backend = RecordingBackend(open_backend(spec["store"]), log, trigger, stall)
    store = StateStore(backend, PREFIX)
    out: dict[str, Any]
    if spec.get("mode") == "delete":
        try:
            out = delete(spec, store, timeline)
        except EleanorError as exc:
            out = {"outcome": "error", "error": f"{type(exc).__name__}: {exc}"}
        result_path.write_text(json.dumps(out))
        return
    events: list[str] = []

    def seen(ev: EngineEvent) -> None:
        events.append(ev.kind)
        note_time(timeline, "event", kind=ev.kind, stage=ev.stage_name)

    block = Path(spec["block"]) if spec.get("block") else None
    engine = TaskEngine(
        spec["task_id"],
        make_stages(
            spec["stages"],
            Path(spec["effects"]),
            block_stage=spec.get("block_stage"),
            block=block,
            timeline=timeline,
            poll_stage=spec.get("poll_stage"),
        ),
        RelState,
        store,
        max_attempts=spec.get("max_attempts", 5),
        backoff=Backoff(initial=0.01, max_delay=0.05),
        lease_ttl=spec.get("lease_ttl", 10.0),
        wait_for_lease=spec.get("wait_for_lease", 0.0),
        renew_interval=spec.get("renew_interval"),
        clock_skew_tolerance=spec.get("clock_skew_tolerance", 0.0),
        cancel_check_interval=spec.get("cancel_check_interval", 5.0),
        on_event=seen,
    )
    gate = spec.get("gate")
    if gate:
        Path(gate["ready"]).touch()
        wait_for(Path(gate["go"]), timeout=60)
    watch = spec.get("lease_watch")
    began = time.monotonic()
    try:
        summary = engine.run(
            time_budget=spec.get("time_budget"),
            lease_watch=LeaseWatch.from_dict(watch) if watch is not None else None,
        )
    except LeaseHeld as exc:
        out = {
            "outcome": "lease_held",
            "error": str(exc),
            "watch": exc.watch.to_dict() if exc.watch is not None else None,
            "needed_seconds": exc.needed_seconds,
        }
    except LeaseLost as exc:
        out = {"outcome": "lease_lost", "error": str(exc)}
    except Exception as exc:
        out = {
            "outcome": "error",
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(),
        }
    else:
        out = {
            "outcome": "complete" if summary.status is StageStatus.COMPLETE else "other",
            "status": summary.status.value,
            "done": summary.done,
            "message": summary.message,
        }
    out["run_seconds"] = time.monotonic() - began
    out["events"] = events
    out["resumed"] = backend.resumed
    result_path.write_text(json.dumps(out))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
