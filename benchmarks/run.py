"""Run the benchmarks, print one table per section and write the same figures as JSON.

python -m benchmarks                 # the full run (several minutes)
python -m benchmarks --quick         # proves the harness works (< 1 minute)
python -m benchmarks --only requests overhead --json /tmp/out.json
python -m benchmarks --quick --only obstore
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks._util import fake_aws_env, moto_server, targets_table

SECTIONS = (
    "requests",
    "overhead",
    "cold_start",
    "resume",
    "history",
    "peer",
    "records",
    "fanout",
    "index",
    "powertools",
)
# Sections that need an optional extra (section -> the module it imports): part of a
# full run when the extra is installed; --quick runs them only when --only names them,
# so the quick harness check stays about the core sections (tests/obstore checks this
# one's quick run itself).
OPTIONAL_SECTIONS = {
    "obstore": "obstore",
    "otel": "opentelemetry.sdk",
    "langgraph": "langgraph",
}
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"


@dataclass(frozen=True)
class Config:
    """Sizes and rounds; ``--quick`` shrinks them (the request counts stay complete)."""

    request_ns: tuple[int, ...] = (1, 10, 100)
    overhead_stages: int = 10
    overhead_rounds: int = 31
    cold_rounds: int = 20
    importtime_runs: int = 5
    resume_ns: tuple[int, ...] = (10, 100, 1000)
    resume_rounds: tuple[tuple[int, int], ...] = ((10, 15), (100, 7), (1000, 3))
    # N, rounds, ms: load_task with a simulated S3 round trip, where threads pay off.
    resume_rtt: tuple[int, int, float] = (100, 3, 20.0)
    history_sizes: tuple[int, ...] = (1, 10, 100, 1000)
    history_rounds: int = 50
    peer_rounds: int = 100
    # ctx.records: records through one stage, interleaved rounds, records that all fail.
    records_n: int = 100_000
    records_rounds: int = 5
    records_failed: int = 10_000
    # fan-out: records over 8 shards, run(workers=N) for each N, interleaved rounds.
    fanout_records: int = 200_000
    fanout_rounds: int = 3
    fanout_workers: tuple[int, ...] = (1, 2, 4, 8)
    # obstore vs boto3: fresh-process rounds of the cold path; warm N-stage run rounds.
    obstore_cold_rounds: int = 20
    obstore_warm_stages: int = 10
    obstore_warm_rounds: int = 21
    # the task index: tasks seeded (1% ERROR) for tasks --status ERROR, scan vs index.
    # 2,000, not the 10,000: on moto over HTTP here 10,000 (50,000 seed PUTs, then
    # a 50,000-request scan) did not finish in 16 min; the index side is ~1 LIST + 5 per
    # match at any size.
    index_tasks: int = 2_000
    powertools_rounds: int = 100
    langgraph_rounds: int = 20


QUICK = Config(
    overhead_rounds=3,
    cold_rounds=2,
    importtime_runs=1,
    resume_ns=(10, 100),
    resume_rounds=((10, 3), (100, 2)),
    resume_rtt=(10, 2, 20.0),
    history_sizes=(1, 10, 100),
    history_rounds=5,
    peer_rounds=3,
    records_n=2_000,
    records_rounds=1,
    records_failed=2_000,
    fanout_records=8_000,
    fanout_rounds=1,
    obstore_cold_rounds=2,
    obstore_warm_rounds=2,
    index_tasks=200,
    powertools_rounds=3,
    langgraph_rounds=2,
)


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor()
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = ""
    versions: dict[str, str | None] = {}
    for dist in ("boto3", "botocore", "moto", "pydantic", "aws-lambda-powertools", "obstore"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "cpu": cpu,
        "platform": platform.platform(),
        "commit": commit,
        "versions": versions,
    }


def _installed(optional: dict[str, str]) -> list[str]:
    """The optional sections whose extra can be imported here."""
    from importlib.util import find_spec

    return [name for name, module in optional.items() if find_spec(module) is not None]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="few rounds, small sizes: proves the harness, measures little",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=(*SECTIONS, *OPTIONAL_SECTIONS),
        metavar="SECTION",
        help=f"run only these sections ({', '.join((*SECTIONS, *OPTIONAL_SECTIONS))})",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=DEFAULT_JSON,
        help=f"where to write the figures (default {DEFAULT_JSON})",
    )
    args = parser.parse_args(argv)
    fake_aws_env()
    cfg = QUICK if args.quick else Config()
    wanted = args.only or [*SECTIONS, *(() if args.quick else _installed(OPTIONAL_SECTIONS))]

    from benchmarks import (
        bench_cold_start,
        bench_fanout,
        bench_history,
        bench_index,
        bench_langgraph,
        bench_obstore,
        bench_otel,
        bench_overhead,
        bench_peer,
        bench_powertools,
        bench_records,
        bench_requests,
        bench_resume,
    )
    from benchmarks.workload import engine_label

    report: dict[str, Any] = {
        "meta": {**machine(), "quick": args.quick, "measured": engine_label()},
        "sections": {},
    }
    print(
        f"eleanor_cloud benchmarks{' (--quick)' if args.quick else ''}: "
        f"{report['meta']['date']}, {report['meta']['nproc']} CPU "
        f"({report['meta']['cpu']}), Python {report['meta']['python']}, "
        f"measuring the {report['meta']['measured']}\n",
        flush=True,
    )
    with moto_server() as url:
        jobs: dict[str, tuple[Callable[[], dict[str, Any]], Callable[[dict[str, Any]], str]]] = {
            "requests": (
                lambda: bench_requests.run(list(cfg.request_ns), url),
                bench_requests.render,
            ),
            "overhead": (
                lambda: bench_overhead.run(cfg.overhead_stages, cfg.overhead_rounds, url),
                bench_overhead.render,
            ),
            "cold_start": (
                lambda: bench_cold_start.run(cfg.cold_rounds, url, cfg.importtime_runs),
                bench_cold_start.render,
            ),
            "resume": (
                lambda: bench_resume.run(
                    list(cfg.resume_ns), dict(cfg.resume_rounds), url, cfg.resume_rtt
                ),
                bench_resume.render,
            ),
            "history": (
                lambda: bench_history.run(list(cfg.history_sizes), cfg.history_rounds),
                bench_history.render,
            ),
            "peer": (lambda: bench_peer.run(cfg.peer_rounds), bench_peer.render),
            "records": (
                lambda: bench_records.run(
                    cfg.records_n, cfg.records_rounds, cfg.records_failed, url
                ),
                bench_records.render,
            ),
            "fanout": (
                lambda: bench_fanout.run(cfg.fanout_records, cfg.fanout_rounds, cfg.fanout_workers),
                bench_fanout.render,
            ),
            "index": (lambda: bench_index.run(cfg.index_tasks, url), bench_index.render),
            "powertools": (
                lambda: bench_powertools.run(cfg.powertools_rounds, url),
                bench_powertools.render,
            ),
            "otel": (
                lambda: bench_otel.run(cfg.overhead_stages, cfg.overhead_rounds),
                bench_otel.render,
            ),
            "langgraph": (
                lambda: bench_langgraph.run(cfg.langgraph_rounds, url),
                bench_langgraph.render,
            ),
            "obstore": (
                lambda: bench_obstore.run(
                    cfg.obstore_cold_rounds, cfg.obstore_warm_stages, cfg.obstore_warm_rounds, url
                ),
                bench_obstore.render,
            ),
        }
        for name in (*SECTIONS, *OPTIONAL_SECTIONS):
            if name not in wanted:
                continue
            measure, render = jobs[name]
            start = time.perf_counter()
            result = measure()
            result["seconds"] = round(time.perf_counter() - start, 1)
            report["sections"][name] = result
            print(render(result))
            if result.get("targets"):
                print(targets_table(result["targets"]))
            print(f"({name}: {result['seconds']} s)\n", flush=True)
    all_targets = [t for s in report["sections"].values() for t in s.get("targets", [])]
    report["targets_met"] = sum(t["met"] for t in all_targets)
    report["targets_total"] = len(all_targets)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"{report['targets_met']}/{report['targets_total']} targets met; "
        f"figures written to {args.json}"
    )
    return 0
