"""3. Cold start: fresh interpreters, as a Lambda cold start pays them.

Each variant is one ``python -c`` subprocess; the variants are interleaved round by
round. Baselines: ``import pydantic`` plus the seed model definitions (a copy of
``eleanor_cloud/models.py`` imported as a top-level module, byte-compiled like ours),
and boto3 creating a client and sending one ``put_object`` of the same size as our
envelope. The S3 variants talk to the moto server via ``AWS_ENDPOINT_URL_S3``.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks._util import REGION, interleaved, median, new_bucket, ratio, summary, table, target

HEAVY = ("boto3", "botocore", "fsspec", "moto", "rich", "click")

_EC_SAVE = """
import os, uuid
import eleanor_cloud as ec
class State(ec.BaseStageState[ec.SimpleRecordsResult]):
    source: str = ""
store = ec.open_store("s3://" + os.environ["BENCH_BUCKET"] + "/cold")
store.create(State(task_id="c-" + uuid.uuid4().hex[:12], stage_name="extract"))
"""

_RAW_SAVE = """
import os, uuid
import boto3
client = boto3.client("s3")
client.put_object(Bucket=os.environ["BENCH_BUCKET"], Key="raw/" + uuid.uuid4().hex[:12],
                  Body=b"x" * int(os.environ["BENCH_SIZE"]), IfNoneMatch="*",
                  ContentType="application/json")
"""

VARIANTS = {
    "import pydantic": "import pydantic",
    "import pydantic + models": "import seed_models",
    "import eleanor_cloud": "import eleanor_cloud",
    "import boto3, pydantic": "import boto3, pydantic",
    "boto3 client + put_object": _RAW_SAVE,
    "eleanor_cloud open_store + save": _EC_SAVE,
}
IMPORT_TARGET = 1.0
SAVE_TARGET = 1.15


def _envelope_size() -> int:
    """Bytes of the envelope the eleanor variant writes (for the raw body size)."""
    from eleanor_cloud import BaseStageState, SimpleRecordsResult, open_store

    class State(BaseStageState[SimpleRecordsResult]):
        source: str = ""

    store = open_store("memory://")
    record = store.create(State(task_id="c-000000000000", stage_name="extract"))
    return len(store.backend.read(record.key)[0])


def _run(code: str, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-c", code], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def importtime(env: dict[str, str], runs: int, top: int = 15) -> dict[str, Any]:
    """``-X importtime`` of ``import eleanor_cloud``: median cumulative us per module."""
    cumulative: dict[str, list[int]] = {}
    self_us: dict[str, list[int]] = {}
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import eleanor_cloud"],
                             env=env, check=True, capture_output=True, text=True).stderr
        for line in out.splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            own, cum, name = (p.strip() for p in line[len("import time:"):].split("|"))
            cumulative.setdefault(name.strip(), []).append(int(cum))
            self_us.setdefault(name.strip(), []).append(int(own))
    med = {n: int(statistics.median(v)) for n, v in cumulative.items()}
    ours = {n: int(statistics.median(v)) for n, v in self_us.items()
            if n.startswith("eleanor_cloud")}
    ranked = sorted(med.items(), key=lambda kv: kv[1], reverse=True)[:top]
    return {
        "runs": runs,
        "eleanor_cloud_cumulative_us": med.get("eleanor_cloud", 0),
        "eleanor_cloud_own_modules_self_us": sum(ours.values()),
        "top_cumulative_us": [{"module": n, "cumulative_us": us} for n, us in ranked],
        "eleanor_cloud_modules_self_us": dict(sorted(ours.items(), key=lambda kv: -kv[1])),
    }


def run(rounds: int, server_url: str, importtime_runs: int) -> dict[str, Any]:
    import boto3

    client = boto3.client("s3", endpoint_url=server_url, region_name=REGION)
    bucket = new_bucket(client, "cold")
    tmp = Path(tempfile.mkdtemp(prefix="eleanor-bench-"))
    try:
        models = Path(__file__).resolve().parent.parent / "eleanor_cloud" / "models.py"
        shutil.copy(models, tmp / "seed_models.py")
        env = dict(os.environ, PYTHONPATH=str(tmp), AWS_ENDPOINT_URL_S3=server_url,
                   BENCH_BUCKET=bucket, BENCH_SIZE=str(_envelope_size()))
        loaded = subprocess.run(
            [sys.executable, "-c", ("import sys, eleanor_cloud; "
                                    f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))")],
            env=env, check=True, capture_output=True, text=True).stdout.split()
        times = interleaved({name: (lambda c=code: _run(c, env))
                             for name, code in VARIANTS.items()}, rounds)
        imports = importtime(env, importtime_runs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = {name: median(t) for name, t in times.items()}
    import_ratio = ratio(med["import eleanor_cloud"], med["import pydantic + models"])
    save_ratio = ratio(med["eleanor_cloud open_store + save"], med["boto3 client + put_object"])
    import_extra = round((med["import eleanor_cloud"] - med["import pydantic + models"]) * 1000, 1)
    save_extra = round((med["eleanor_cloud open_store + save"]
                        - med["boto3 client + put_object"]) * 1000, 1)
    targets = [
        target("import eleanor_cloud / import pydantic + models", f"<= {IMPORT_TARGET}",
               import_ratio, import_ratio <= IMPORT_TARGET, f"{import_extra:+} ms"),
        target("import + open_store + save / boto3 client + put_object", f"<= {SAVE_TARGET}",
               save_ratio, save_ratio <= SAVE_TARGET, f"{save_extra:+} ms"),
        target("heavy modules loaded by import eleanor_cloud", "none",
               " ".join(loaded) or "none", not loaded),
    ]
    return {
        "rounds": rounds,
        "body_bytes": int(env["BENCH_SIZE"]),
        "variants": {name: summary(t) for name, t in times.items()},
        "ratios": {"import": import_ratio, "save": save_ratio},
        "heavy_modules_loaded": loaded,
        "importtime": imports,
        "targets": targets,
    }


def render(result: dict[str, Any]) -> str:
    base = {"import pydantic": "import pydantic + models",
            "import pydantic + models": "import pydantic + models",
            "import eleanor_cloud": "import pydantic + models",
            "import boto3, pydantic": "import pydantic + models",
            "boto3 client + put_object": "boto3 client + put_object",
            "eleanor_cloud open_store + save": "boto3 client + put_object"}
    variants = result["variants"]
    rows = [[name, v["median_ms"], v["p25_ms"], v["p75_ms"],
             ratio(v["median_ms"], variants[base[name]]["median_ms"]), base[name]]
            for name, v in variants.items()]
    out = table(f"3. cold start, {result['rounds']} interleaved subprocess runs each",
                ["variant", "median ms", "p25 ms", "p75 ms", "ratio", "vs"], rows)
    imp = result["importtime"]
    rows = [[e["module"], round(e["cumulative_us"] / 1000, 1)]
            for e in imp["top_cumulative_us"][:10]]
    out += "\n" + table(
        f"3b. python -X importtime -c 'import eleanor_cloud' (median of {imp['runs']}); "
        f"eleanor_cloud's own modules: {imp['eleanor_cloud_own_modules_self_us'] / 1000:.1f} ms",
        ["module", "cumulative ms"], rows)
    return out
