"""The CLI package's shape: no import circles, commands registered one way, small modules."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import eleanor_cloud.cli

PACKAGE = Path(eleanor_cloud.cli.__file__).parent
MODULES = sorted(
    "eleanor_cloud.cli" + ("" if p.stem == "__init__" else f".{p.stem}")
    for p in PACKAGE.glob("*.py")
)


def _cli_imports(module: str) -> set[str]:
    """The eleanor_cloud.cli modules ``module`` imports anywhere: at the top, inside
    functions (the lazy imports) and under TYPE_CHECKING, since each could close a circle."""
    name = module.rpartition(".")[2] if module != "eleanor_cloud.cli" else "__init__"
    tree = ast.parse((PACKAGE / f"{name}.py").read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "eleanor_cloud.cli":
                # ``from eleanor_cloud.cli import read``: submodules, or the package.
                for alias in node.names:
                    sub = f"eleanor_cloud.cli.{alias.name}"
                    found.add(sub if sub in MODULES else "eleanor_cloud.cli")
            elif node.module.startswith("eleanor_cloud.cli."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("eleanor_cloud.cli"))
    return found - {module}


def test_cli_imports_have_no_circle() -> None:
    graph = {m: _cli_imports(m) for m in MODULES}
    # Depth-first search for a back edge; report the circle itself.
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                circle = [*path[path.index(nxt) :], nxt]
                pytest.fail("import circle: " + " -> ".join(circle))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = "done"

    for module in MODULES:
        if module not in state:
            visit(module, [module])


def test_commands_do_not_know_the_app() -> None:
    # app.py imports the command modules and adds their COMMANDS; the reverse would be
    # registration by import side effect, a circle in waiting.
    # Only main() in the package itself imports the app (lazily, to run it).
    importers = [m for m in MODULES if "eleanor_cloud.cli.app" in _cli_imports(m)]
    assert importers == ["eleanor_cloud.cli"]


@pytest.mark.parametrize("module", MODULES)
def test_each_module_imports_alone(module: str) -> None:
    # A fresh interpreter per module: an import circle that only works in one order
    # would fail here with "partially initialized module".
    out = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr


def test_every_command_is_registered() -> None:
    from eleanor_cloud.cli import checking, index_cmds, manage, read, running
    from eleanor_cloud.cli.app import cli
    from eleanor_cloud.ui import command as ui_command

    modules = (read, manage, running, checking, index_cmds, ui_command)
    commands = [c for m in modules for c in m.COMMANDS]
    assert sorted(cli.commands) == sorted(c.name for c in commands if c.name)
    assert set(cli.commands) >= {"demo", "run", "tasks", "status", "history", "schema", "check"}


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_modules_stay_small(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= 400, f"{path.name} has {lines} lines: split it along a seam"
