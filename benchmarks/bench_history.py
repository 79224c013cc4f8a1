"""5. History growth: a stage state after 1, 10, 100 (and 1000) attempts.

Every attempt appends one ``StageStateHistoryEntry`` and every checkpoint writes the
whole state, so the object, the PUT body, the resume GET and the serialize/parse CPU
all grow with the history. Serialize = ``StateStore.save`` (model_dump + the
validate-before-write round trip + envelope JSON) and parse = ``StateStore.load``
(JSON + envelope + validation), both on the in-memory backend so only our CPU counts.
"""

from __future__ import annotations

from typing import Any

from benchmarks._util import interleaved, summary, table
from benchmarks.workload import BenchState, history_entry


def run(sizes: list[int], rounds: int) -> dict[str, Any]:
    from eleanor_cloud import SimpleRecordsResult, StageStatus, open_store

    rows: list[dict[str, Any]] = []
    for attempts in sizes:
        store = open_store("memory://")
        state = BenchState(
            task_id="history",
            stage_name="flaky",
            status=StageStatus.RETRY,
            attempts=attempts,
            history=[history_entry(i + 1) for i in range(attempts)],
            result=SimpleRecordsResult(total_count=1),
        )
        record = store.create(state)
        size = len(store.backend.read(record.key)[0])

        held = [record]  # each save replaces the record the previous one returned

        def save(state: BenchState = state, store: Any = store, held: list[Any] = held) -> None:
            held[0] = store.save(state, replaces=held[0])

        def load(store: Any = store) -> None:
            store.load("history", "flaky", BenchState)

        cpu: dict[str, list[float]] = {}
        times = interleaved({"save": save, "load": load}, rounds, cpu=cpu)
        rows.append(
            {
                "attempts": attempts,
                "bytes": size,
                "save": summary(times["save"]),
                "load": summary(times["load"]),
                "save_cpu": summary(cpu["save"]),
                "load_cpu": summary(cpu["load"]),
            }
        )
    first, last = rows[0], rows[-1]
    per_entry = (last["bytes"] - first["bytes"]) / (last["attempts"] - first["attempts"])
    save_per = (median_ms(last, "save") - median_ms(first, "save")) / (
        last["attempts"] - first["attempts"]
    )
    load_per = (median_ms(last, "load") - median_ms(first, "load")) / (
        last["attempts"] - first["attempts"]
    )
    return {
        "rows": rows,
        "bytes_per_entry": round(per_entry, 1),
        "save_us_per_entry": round(save_per * 1000, 2),
        "load_us_per_entry": round(load_per * 1000, 2),
        "bounded": False,
        "note": (
            "history is unbounded: BaseStageState.history is a plain list, the engine "
            "appends one entry per attempt and never trims, and the retry accounting "
            "(engine/retry.py) counts attempts from the history itself. Growth is "
            f"linear: ~{per_entry:.0f} bytes per attempt in every later PUT and resume GET."
        ),
        "targets": [],
    }


def median_ms(row: dict[str, Any], op: str) -> float:
    return float(row[op]["median_ms"])


def render(result: dict[str, Any]) -> str:
    rows = [
        [
            r["attempts"],
            r["bytes"],
            round(r["bytes"] / 1024, 1),
            r["save"]["median_ms"],
            r["save_cpu"]["median_ms"],
            r["load"]["median_ms"],
            r["load_cpu"]["median_ms"],
        ]
        for r in result["rows"]
    ]
    out = table(
        "5. history growth (one stage state; memory backend: our CPU only)",
        [
            "history entries",
            "bytes",
            "KiB",
            "save median ms",
            "save CPU ms",
            "load median ms",
            "load CPU ms",
        ],
        rows,
    )
    return out + (
        f"\ngrowth: {result['bytes_per_entry']} bytes, "
        f"{result['save_us_per_entry']} us save, {result['load_us_per_entry']} us "
        f"load per entry. {result['note']}\n"
    )
