"""The obstore benchmark section runs: ``python -m benchmarks --quick --only obstore``
(the harness's own quick check, tests/bench, covers the core sections). Timings are
never asserted: they are noise on a shared machine; the shape of the report is."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_obstore_section_reports_cold_and_warm_figures(tmp_path: Path) -> None:
    out = tmp_path / "quick.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--only", "obstore", "--json", str(out)],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report["sections"]) == {"obstore"}
    section = report["sections"]["obstore"]
    variants = section["cold"]["variants"]
    assert len(variants) == 6
    for name, figures in variants.items():
        assert figures["n"] == 2, name
        assert figures["peak_rss_mib"] > 5, name  # the child's own VmHWM, not the parent's
        assert figures["cpu_median_ms"] > 0, name
    assert set(section["warm"]["variants"]) == {"s3:// (boto3)", "obstore+s3://"}
    assert [t["name"].split(":")[0] for t in section["targets"]] == [
        "cold wall",
        "cold wall",
        "warm N=10 run wall",
    ]
    assert "obstore" in report["meta"]["versions"]
