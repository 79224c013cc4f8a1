"""A worker process of the reliability campaign: run one task once, report the outcome.

``python -m tests.reliability.worker <spec.json>``; the outcome goes to
``<spec.json>.result`` (absent if the process was killed). Spec keys:

``store`` ({"kind": "local", "root"} or {"kind": "s3", "bucket", "endpoint"}),
``task_id``, ``stages``, ``effects`` (side-effect file), ``log`` (write log, optional),
``trigger`` (see :class:`~tests.reliability.harness.Trigger`, optional), ``gate``
({"ready", "go"}: touch ``ready``, then wait for ``go``, optional), ``lease_ttl``,
``wait_for_lease``, ``renew_interval``, ``clock_skew_tolerance``, ``max_attempts``,
``block_stage`` and ``block`` (hold one stage open, see ``EffectStage``).
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Any

from eleanor_cloud.engine import Backoff, TaskEngine
from eleanor_cloud.errors import LeaseHeld, LeaseLost
from eleanor_cloud.models import StageStatus
from eleanor_cloud.store import StateStore
from tests.reliability.harness import (
    PREFIX,
    RecordingBackend,
    RelState,
    Trigger,
    make_stages,
    open_backend,
    wait_for,
)


def main(spec_path: Path) -> None:
    spec = json.loads(spec_path.read_text())
    result_path = Path(f"{spec_path}.result")
    trigger = Trigger(**spec["trigger"]) if spec.get("trigger") else None
    log = Path(spec["log"]) if spec.get("log") else None
    backend = RecordingBackend(open_backend(spec["store"]), log, trigger)
    store = StateStore(backend, PREFIX)
    events: list[str] = []
    block = Path(spec["block"]) if spec.get("block") else None
    engine = TaskEngine(
        spec["task_id"],
        make_stages(
            spec["stages"], Path(spec["effects"]), block_stage=spec.get("block_stage"), block=block
        ),
        RelState,
        store,
        max_attempts=spec.get("max_attempts", 5),
        backoff=Backoff(initial=0.01, max_delay=0.05),
        lease_ttl=spec.get("lease_ttl", 10.0),
        wait_for_lease=spec.get("wait_for_lease", 0.0),
        renew_interval=spec.get("renew_interval"),
        clock_skew_tolerance=spec.get("clock_skew_tolerance", 0.0),
        on_event=lambda ev: events.append(ev.kind),
    )
    gate = spec.get("gate")
    if gate:
        Path(gate["ready"]).touch()
        wait_for(Path(gate["go"]), timeout=60)
    out: dict[str, Any]
    try:
        summary = engine.run()
    except LeaseHeld as exc:
        out = {"outcome": "lease_held", "error": str(exc)}
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
            "message": summary.message,
        }
    out["events"] = events
    out["resumed"] = backend.resumed
    result_path.write_text(json.dumps(out))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
