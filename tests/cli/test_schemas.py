"""The ``--json`` documents: pydantic models, committed JSON Schemas, and the two agree.

The conftest checks every document printed in-process against the committed schema of
its kind; here the files themselves, the ``schema`` command, and a tour of every
command that prints JSON (in-process and from a real process).
"""

from __future__ import annotations

import json
import subprocess
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

import eleanor_cloud as ec
from eleanor_cloud.cli import read, shapes
from eleanor_cloud.models import StageStatus as S
from tests.cli.conftest import BIN, assert_valid_document, published_schema, seed_lease, seed_task

SCHEMAS = resources.files("eleanor_cloud.cli").joinpath("schemas")


@pytest.mark.parametrize("kind", list(shapes.DOCUMENTS))
def test_committed_schema_is_what_the_models_generate(kind: str) -> None:
    committed = SCHEMAS.joinpath(f"{kind}.json").read_text()
    assert committed == shapes.schema_text(kind), (
        f"eleanor_cloud/cli/schemas/{kind}.json is stale: run 'make schemas' and review "
        "the diff (within schema 1 fields may only be added)"
    )
    jsonschema.Draft202012Validator.check_schema(json.loads(committed))


def test_no_schema_file_without_a_model() -> None:
    files = sorted(p.name for p in SCHEMAS.iterdir() if p.name.endswith(".json"))
    assert files == sorted(f"{kind}.json" for kind in shapes.DOCUMENTS)


def test_schema_command_choices_are_the_documents() -> None:
    # read.py spells the kinds out so that --help needs no pydantic models.
    assert list(shapes.DOCUMENTS) == read._KINDS


def test_documents_keep_the_schema_version_key() -> None:
    for kind in shapes.DOCUMENTS:
        schema = published_schema(kind)
        assert schema["properties"]["schema"]["const"] == 1
        assert schema["properties"]["kind"]["const"] == kind
        assert {"schema", "kind", "store"} <= set(schema["required"])
        # Fields are added within a version: consumers must not reject unknown ones.
        assert schema.get("additionalProperties", True) is not False


def test_schema_command_prints_the_published_file(invoke) -> None:
    result = invoke("schema", "task")
    assert result.exit_code == 0
    assert result.stdout == SCHEMAS.joinpath("task.json").read_text()

    listing = invoke("schema")
    assert listing.exit_code == 0
    kinds = [line.split()[0] for line in listing.stdout.splitlines()[1:]]
    assert kinds == list(shapes.DOCUMENTS)

    assert invoke("schema", "nosuch").exit_code == 2


def test_a_breaking_change_fails_validation(store: ec.StateStore, invoke) -> None:
    seed_task(store, "b", [("only", S.COMPLETE, 1)])
    doc = json.loads(invoke("status", "b", "--json").stdout)
    renamed = dict(doc)
    renamed["state"] = renamed.pop("status")
    with pytest.raises(jsonschema.ValidationError):
        assert_valid_document(renamed)
    wrong_status = dict(doc, status="DONE")
    with pytest.raises(jsonschema.ValidationError):
        assert_valid_document(wrong_status)
    assert_valid_document(dict(doc, added_later=True))  # an added field is fine


def _json(invoke, *args: str) -> dict:  # type: ignore[type-arg]
    result = invoke(*args, "--json")
    assert result.stdout.lstrip().startswith("{"), result.output
    doc: dict = json.loads(result.stdout)  # type: ignore[type-arg]
    assert_valid_document(doc)
    return doc


def test_every_json_output_validates(store: ec.StateStore, store_dir: Path, invoke) -> None:
    from datetime import timedelta

    from eleanor_cloud.clock import format_ts, utc_now

    seed_task(store, "done", [("a", S.COMPLETE, 1), ("b", S.COMPLETE, 2)])
    seed_task(store, "failed", [("a", S.COMPLETE, 1), ("b", S.ERROR, 3)])
    seed_task(store, "busy", [("a", S.COMPLETE, 1), ("b", S.RUNNING, 1), ("c", S.CREATED, 0)])
    seed_lease(store, "busy", expires_at=format_ts(utc_now() + timedelta(hours=1)))
    seed_task(store, "rotten", [("a", S.COMPLETE, 1)])
    (store_dir / "rotten" / "a.json").write_bytes(b"{not json")

    kinds = {
        ("tasks",): "tasks",
        ("tasks", "--status", "ERROR", "--limit", "1"): "tasks",
        ("status", "done"): "task",
        ("status", "busy"): "task",
        ("history", "failed"): "history",
        ("history", "failed", "b"): "history",
        ("history", "busy", "c"): "history",
        ("lease", "done"): "lease",
        ("lease", "busy"): "lease",
        ("lease", "busy", "--break", "--yes"): "lease",
        ("retry", "failed"): "task",
        ("retry", "done"): "task",
        ("rollback", "done", "--to", "b"): "task",
        ("cancel", "busy"): "task",
        ("demo", "--records", "20", "--work-delay", "0"): "task",
        ("delete", "done", "--yes"): "delete",
    }
    for args, kind in kinds.items():
        doc = _json(invoke, *args)
        assert doc["kind"] == kind, args
    # The optional "error" field, present and valid.
    rows = {t["task_id"]: t for t in _json(invoke, "tasks")["tasks"]}
    assert rows["rotten"]["status"] == "CORRUPT" and rows["rotten"]["error"]


def test_json_from_a_real_process_validates(cli_env: dict[str, str]) -> None:
    out = subprocess.run(
        [str(BIN / "eleanor-cloud"), "demo", "--records", "20", "--work-delay", "0", "--json"],
        env=cli_env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert_valid_document(doc)
    assert doc["action"] == "demo" and doc["exit_code"] == 0 and "changed" not in doc
