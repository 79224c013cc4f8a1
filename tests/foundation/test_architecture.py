"""The house rules, as tests: layers, no import circles, small modules, a pinned API.

Imports are read from the source (``ast``), so lazy imports inside functions count too
(they are how the CLI and the package stay cheap to import, and a circle among them is
still a circle); only ``if TYPE_CHECKING:`` blocks are left out.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import eleanor_cloud

PACKAGE = Path(eleanor_cloud.__file__).parent
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(name: str) -> set[str]:
    """The eleanor_cloud modules ``name`` imports (resolving ``from pkg import module``)."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in MODULES)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                target = f"{base}.{alias.name}"
                if target in MODULES:
                    out.add(target)
                elif base in MODULES:
                    out.add(base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    out.discard(name)
    return out


GRAPH = {name: _imports(name) for name in MODULES}


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in GRAPH[node]:
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            connect(node)
    return found


def test_the_cycle_finder_finds_a_ring(monkeypatch: pytest.MonkeyPatch) -> None:
    ring = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    monkeypatch.setattr(sys.modules[__name__], "GRAPH", ring)
    assert _cycles() == [["a", "b", "c"]]


def test_no_import_circles() -> None:
    assert _cycles() == [], "modules that import each other (directly or in a ring)"


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        # Arrows run downward only: cli/aws -> engine -> store -> backends -> floor.
        ("eleanor_cloud.backends", ("eleanor_cloud.store", "eleanor_cloud.engine")),
        ("eleanor_cloud.store", ("eleanor_cloud.engine", "eleanor_cloud.cli")),
        ("eleanor_cloud.engine", ("eleanor_cloud.cli", "eleanor_cloud.aws")),
        ("eleanor_cloud.models", ("eleanor_cloud.",)),
        ("eleanor_cloud.errors", ("eleanor_cloud.",)),
    ],
)
def test_layers_import_only_downward(layer: str, forbidden: tuple[str, ...]) -> None:
    bad = {
        (name, target)
        for name, targets in GRAPH.items()
        if name == layer or name.startswith(layer + ".")
        for target in targets
        if target.startswith(forbidden) and not target.startswith(layer)
    }
    assert bad == set(), f"{layer} must not import {forbidden}"


def test_the_engine_never_imports_a_cloud_sdk() -> None:
    for name, path in MODULES.items():
        if not name.startswith("eleanor_cloud.engine"):
            continue
        source = path.read_text(encoding="utf-8")
        for sdk in ("boto3", "botocore", "fsspec", "s3fs", "gcsfs", "adlfs", "azure"):
            assert f"import {sdk}" not in source, f"{name} imports {sdk}"


def test_no_module_over_the_size_limit() -> None:
    big = {
        name: n
        for name, path in MODULES.items()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert big == {}, f"modules over {MAX_LINES} lines: split them by responsibility"


# -- the public API ----------------------------------------------------------------------

PUBLIC = {
    "eleanor_cloud": [
        "ACTIVE_STATES",
        "CANCELABLE_STATES",
        "CREATE",
        "INACTIVE_STATES",
        "OVERWRITE",
        "STAGE_NAME_MAX_LENGTH",
        "STAGE_RESULT",
        "AccessDenied",
        "AlreadyExists",
        "AnyStageState",
        "BackendError",
        "Backoff",
        "BaseStage",
        "BaseStageState",
        "Batch",
        "BucketNotFound",
        "ConfigurationError",
        "Conflict",
        "CorruptState",
        "Create",
        "EleanorError",
        "EngineEvent",
        "InvalidKey",
        "InvalidState",
        "Lease",
        "LeaseHeld",
        "LeaseLost",
        "MissingDependency",
        "NotFound",
        "NotSupported",
        "ObjectBackend",
        "Overwrite",
        "Page",
        "Record",
        "RecordStatus",
        "Replace",
        "RetryPolicy",
        "Shard",
        "SimpleRecordsResult",
        "StageContext",
        "StageStateHistoryEntry",
        "StageStatus",
        "StageSummary",
        "StateStore",
        "TaskBindingError",
        "TaskEngine",
        "TaskManifest",
        "TaskSummary",
        "Unavailable",
        "Version",
        "WriteMode",
        "__version__",
        "open_store",
        "register_backend",
    ],
    "eleanor_cloud.engine": [
        "AnyStageState",
        "Backoff",
        "BaseStage",
        "Batch",
        "EngineEvent",
        "EventKind",
        "Page",
        "Shard",
        "StageContext",
        "StageSummary",
        "TaskEngine",
        "TaskSummary",
        "cancel_task",
        "delete_task",
        "retry_failed_task",
        "rollback_task",
        "task_status",
    ],
    "eleanor_cloud.store": [
        "Lease",
        "Record",
        "StateStore",
        "TaskManifest",
        "open_store",
        "register_backend",
    ],
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_the_public_api_is_exactly_the_curated_one(module: str) -> None:
    """Adding or removing a public name is a decision: change this list with it."""
    import importlib

    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == sorted(PUBLIC[module])
    for name in mod.__all__:
        assert getattr(mod, name) is not None, f"{module}.{name} is exported but missing"


def test_store_has_no_hidden_version_state() -> None:
    """Versions travel with the data: no cache, no mutable epoch on the store."""
    store = eleanor_cloud.open_store("memory://")
    for gone in ("epoch", "forget", "known_version", "delete_lease"):
        assert not hasattr(store, gone), f"StateStore.{gone} is back"
