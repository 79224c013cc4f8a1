"""CLI plumbing: lazy imports, store selection, one-line errors, delete."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import eleanor_cloud as ec
from eleanor_cloud.models import StageStatus as S
from tests.cli.conftest import seed_task


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_import_eleanor_cloud_loads_no_cli_stack() -> None:
    loaded = _modules_after("import eleanor_cloud, eleanor_cloud.cli")
    for heavy in ("click", "rich", "boto3", "eleanor_cloud.cli.app", "eleanor_cloud.examples.demo"):
        assert heavy not in loaded, heavy


def test_help_loads_neither_rich_nor_engine_nor_boto3() -> None:
    code = (
        "import sys\nfrom eleanor_cloud.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
    )
    loaded = _modules_after(code)
    assert "click" in loaded
    for heavy in (
        "rich",
        "boto3",
        "eleanor_cloud.engine.engine",
        "eleanor_cloud.examples.demo",
        "eleanor_cloud.cli.shapes",  # the --json models: built only when printing JSON
    ):
        assert heavy not in loaded, heavy


def test_plain_output_does_not_import_rich(store: ec.StateStore, store_dir: Path) -> None:
    seed_task(store, "p", [("only", S.COMPLETE, 1)])
    code = (
        "from eleanor_cloud.cli import main\n"
        f"try:\n    main(['--store', {str(store_dir)!r}, 'status', 'p'])\n"
        "except SystemExit as e:\n    assert e.code == 0, e.code\n"
    )
    loaded = _modules_after(code)
    assert "rich" not in loaded and "boto3" not in loaded


def test_store_from_env_var(store: ec.StateStore, store_dir: Path) -> None:
    from click.testing import CliRunner

    from eleanor_cloud.cli.app import cli

    seed_task(store, "env-task", [("only", S.COMPLETE, 1)])
    result = CliRunner().invoke(cli, ["tasks", "--json"], env={"ELEANOR_STORE": str(store_dir)})
    assert [t["task_id"] for t in json.loads(result.stdout)["tasks"]] == ["env-task"]


def test_default_store_is_dot_eleanor_in_cwd(tmp_path: Path, monkeypatch) -> None:
    from click.testing import CliRunner

    from eleanor_cloud.cli.app import cli

    monkeypatch.chdir(tmp_path)
    seed_task(ec.open_store(".eleanor"), "here", [("only", S.CREATED, 0)])
    result = CliRunner().invoke(cli, ["tasks", "--json"], env={"ELEANOR_STORE": None})
    doc = json.loads(result.stdout)
    assert doc["store"] == (tmp_path / ".eleanor").as_uri()
    assert [t["task_id"] for t in doc["tasks"]] == ["here"]


def test_bad_store_url_is_one_line_exit_2(invoke) -> None:
    from click.testing import CliRunner

    from eleanor_cloud.cli.app import cli

    result = CliRunner().invoke(cli, ["--store", "bogus://x", "tasks"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert "unknown store URL scheme 'bogus'" in result.stderr


def test_debug_shows_the_traceback() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "eleanor_cloud.cli", "--store", "bogus://x", "--debug", "tasks"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 1
    assert "Traceback" in out.stderr and "ConfigurationError" in out.stderr
    plain = subprocess.run(
        [sys.executable, "-m", "eleanor_cloud.cli", "--store", "bogus://x", "tasks"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    assert plain.stderr.startswith("eleanor-cloud: error: unknown store URL scheme")


def test_delete_asks_then_deletes(store: ec.StateStore, invoke) -> None:
    seed_task(store, "gone", [("a", S.COMPLETE, 1), ("b", S.COMPLETE, 1)])

    kept = invoke("delete", "gone", input="n\n")
    assert kept.exit_code == 1 and "Delete task gone" in kept.stderr
    assert store.load_manifest("gone").task_id == "gone"

    deleted = invoke("delete", "gone", input="y\n")
    assert deleted.exit_code == 0
    assert deleted.stdout.strip() == "deleted task gone (3 objects)"
    # The lease stays as a tombstone (epochs outlive the task); listings skip it.
    tombstone = store.load_lease("gone")
    assert tombstone is not None and tombstone.value.floor == tombstone.value.epoch > 0
    assert "gone" not in invoke("tasks").stdout

    missing = invoke("delete", "gone", "--yes")
    assert missing.exit_code == 1 and "no task 'gone'" in missing.stderr


def test_delete_json(store: ec.StateStore, invoke) -> None:
    seed_task(store, "j", [("a", S.COMPLETE, 1)])
    doc = json.loads(invoke("delete", "j", "--yes", "--json").stdout)
    assert doc == {
        "schema": 1,
        "kind": "delete",
        "store": doc["store"],
        "task_id": "j",
        "deleted_objects": 2,
    }


def test_quickstart_example_runs_and_resumes_through_the_cli(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "quickstart.py"
    direct = subprocess.run(
        [sys.executable, str(example)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert direct.returncode == 0, direct.stderr
    assert direct.stdout.startswith(
        "quickstart: COMPLETE, result total_count=10 success_count=7 fail_count=3"
    )
    env = {k: v for k, v in os.environ.items() if k != "ELEANOR_STORE"}
    via_cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "eleanor_cloud.cli",
            "--store",
            str(tmp_path / ".eleanor"),
            "run",
            "quickstart:build",
            "--task-id",
            "quickstart",
            "--json",
        ],
        cwd=example.parent,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=env,
    )
    assert via_cli.returncode == 0, via_cli.stderr
    doc = json.loads(via_cli.stdout)
    # Already COMPLETE in that store: nothing re-ran.
    assert [s["attempts"] for s in doc["stages"]] == [1, 1]
