"""No cost without instrumentation: nothing outside the integration imports
OpenTelemetry, and a clear error names the extra when it is missing."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import eleanor_cloud

PACKAGE = Path(eleanor_cloud.__file__).parent
ROOT = PACKAGE.parent

RUN_A_TASK = """
import sys
import eleanor_cloud as ec
from tests.engine.taskdefs import DemoState, FnStage, Out

store = ec.open_store("memory://")
engine = ec.TaskEngine("job", [FnStage("a", lambda s, c: Out(value=1))], DemoState, store)
assert engine.run().status is ec.StageStatus.COMPLETE
loaded = sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry")
assert loaded == [], loaded
print("clean")
"""

WITHOUT_THE_EXTRA = """
import sys
sys.modules["opentelemetry"] = None  # as if opentelemetry-api were not installed
from eleanor_cloud import MissingDependency
try:
    import eleanor_cloud.integrations.otel
except MissingDependency as exc:
    assert exc.install == "eleanor-cloud[otel]", exc.install
    assert "pip install 'eleanor-cloud[otel]'" in str(exc), str(exc)
    assert isinstance(exc, ImportError)
    print("named")
"""


def _python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_running_a_task_uninstrumented_never_imports_opentelemetry() -> None:
    assert _python(RUN_A_TASK) == "clean"


def test_a_missing_extra_names_what_to_install() -> None:
    assert _python(WITHOUT_THE_EXTRA) == "named"


def test_only_the_integration_imports_opentelemetry() -> None:
    importers = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            if any(n.split(".")[0] == "opentelemetry" for n in names):
                importers.add(path.relative_to(PACKAGE).parts[:2])
    assert importers <= {("integrations", "otel")}, importers
