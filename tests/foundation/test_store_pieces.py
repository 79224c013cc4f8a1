"""Envelope, registry, clock and local-backend details the conformance suite does not reach."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

import eleanor_cloud as ec
from eleanor_cloud.backends.local import LocalBackend
from eleanor_cloud.backends.memory import MemoryBackend
from eleanor_cloud.clock import format_ts, parse_ts
from eleanor_cloud.store.envelope import STAGE_FORMAT, Envelope, decode, encode
from eleanor_cloud.store.registry import register_backend
from eleanor_cloud.testing.conformance import CounterState


def test_envelope_is_readable_json_with_header_first() -> None:
    env = Envelope(STAGE_FORMAT, 3, "w-1", "host/1", 2, "2026-01-01T00:00:00.000000Z", {"a": "ü"})
    data = encode(env)
    doc = json.loads(data)
    assert list(doc) == ["format", "revision", "write_id", "writer", "epoch", "written_at", "state"]
    assert "ü" in data.decode()
    assert decode(data, key="k", expected_format=STAGE_FORMAT) == env


@pytest.mark.parametrize(
    ("mutate", "why"),
    [
        (lambda d: d.pop("write_id"), "missing field"),
        (lambda d: d.update(revision=0), "revision"),
        (lambda d: d.update(revision=True), "revision"),
        (lambda d: d.update(epoch=-1), "epoch"),
        (lambda d: d.update(state=[1]), "state must be a JSON object"),
        (lambda d: d.update(extra=1), "unexpected field"),
        (lambda d: d.update(writer=5), "writer"),
    ],
)
def test_envelope_defects_name_the_key(mutate: object, why: str) -> None:
    doc = {
        "format": STAGE_FORMAT,
        "revision": 1,
        "write_id": "w",
        "writer": "x",
        "epoch": 0,
        "written_at": "t",
        "state": {},
    }
    mutate(doc)  # type: ignore[operator]
    with pytest.raises(ec.CorruptState, match=why) as info:
        decode(json.dumps(doc).encode(), key="p/t/s.json", expected_format=STAGE_FORMAT)
    assert "p/t/s.json" in str(info.value)


def test_envelope_records_writer_epoch_and_utc_time(tmp_path: Path) -> None:
    moment = datetime(2026, 11, 30, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    store = ec.open_store(tmp_path, writer="lambda/abc", clock=lambda: moment)
    store.create(CounterState(task_id="t", stage_name="s"), epoch=4)
    doc = json.loads((tmp_path / "t" / "s.json").read_bytes())
    assert doc["writer"] == "lambda/abc"
    assert doc["epoch"] == 4
    assert doc["written_at"] == "2026-11-30T10:00:00.000000Z"


def test_clock_refuses_naive_and_round_trips() -> None:
    with pytest.raises(ValueError, match="naive"):
        format_ts(datetime(2026, 1, 1))
    moment = datetime(2026, 1, 1, 5, 6, 7, 8, tzinfo=UTC)
    assert parse_ts(format_ts(moment)) == moment
    with pytest.raises(ValueError, match="timezone"):
        parse_ts("2026-01-01T00:00:00")


@pytest.mark.parametrize("url", ["memory://", "memory://named/pre/fix"])
def test_open_memory(url: str) -> None:
    store = ec.open_store(url)
    assert isinstance(store.backend, MemoryBackend)
    assert store.prefix == url.partition("://")[2].partition("/")[2]
    other = ec.open_store(url)
    assert other.backend is not store.backend  # no hidden global instances


def test_open_local_by_path_and_file_url(tmp_path: Path) -> None:
    by_path = ec.open_store(str(tmp_path / "a"))
    by_url = ec.open_store((tmp_path / "a").as_uri())
    assert isinstance(by_path.backend, LocalBackend)
    assert by_path.backend.root == by_url.backend.root == tmp_path / "a"  # type: ignore[attr-defined]
    assert ec.open_store(tmp_path, prefix="x/y").prefix == "x/y"
    with pytest.raises(ec.ConfigurationError, match="host"):
        ec.open_store("file://otherhost/dir")


def test_unknown_scheme_names_the_known_ones() -> None:
    with pytest.raises(ec.ConfigurationError, match=r"unknown store URL scheme 'nope'.*s3"):
        ec.open_store("nope://bucket")


def test_bad_options_are_configuration_errors() -> None:
    with pytest.raises(ec.ConfigurationError, match="memory://"):
        ec.open_store("memory://", color="blue")


def test_registered_scheme_and_missing_dependency_hint() -> None:
    register_backend("mem2", "eleanor_cloud.backends.memory:from_url")
    assert isinstance(ec.open_store("mem2://x").backend, MemoryBackend)
    register_backend(
        "needsdep",
        "not_installed_pkg_xyz.backend:from_url",
        install="eleanor-cloud[xyz]",
        requires=("not_installed_pkg_xyz",),
    )
    with pytest.raises(ec.MissingDependency, match=r"pip install 'eleanor-cloud\[xyz\]'") as e:
        ec.open_store("needsdep://bucket")
    assert isinstance(e.value, ImportError)
    with pytest.raises(ec.ConfigurationError, match="bare name"):
        register_backend("s3://", "x:y")


def test_backend_instance_accepted_and_foreign_objects_refused() -> None:
    backend = MemoryBackend()
    assert ec.open_store(backend).backend is backend
    with pytest.raises(ec.InvalidState, match="ObjectBackend"):
        ec.StateStore(object())  # type: ignore[arg-type]


def test_local_backend_reserves_its_own_names(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path)
    for key in ["a/.eleanor-tmp-x", "../x", "a//b", "/abs", "a/./b"]:
        with pytest.raises(ec.InvalidKey):
            backend.write(key, b"x", ec.CREATE)


def test_local_backend_leaves_no_temp_files_and_prunes_empty_dirs(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path)
    version = backend.write("t/s.json", b"1", ec.CREATE)
    version = backend.write("t/s.json", b"2", version.to_replace())
    with pytest.raises(ec.AlreadyExists):
        backend.write("t/s.json", b"3", ec.CREATE)
    leftovers = [p.name for p in (tmp_path / "t").iterdir() if "tmp" in p.name]
    assert leftovers == []
    backend.delete("t/s.json", if_version=version)
    assert not (tmp_path / "t").exists()
    assert list(backend.list("")) == []


def test_local_directory_where_an_object_should_be_reads_as_missing(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path)
    (tmp_path / "t" / "s.json").mkdir(parents=True)
    with pytest.raises(ec.NotFound):
        backend.read("t/s.json")


def test_import_is_cheap_and_lazy() -> None:
    code = (
        "import sys, eleanor_cloud\n"
        "heavy = sorted(m for m in ('boto3', 'botocore', 'fsspec', 's3fs', 'gcsfs', 'adlfs',"
        " 'moto', 'rich', 'click', 'eleanor_cloud.cli', 'eleanor_cloud.engine') "
        "if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
