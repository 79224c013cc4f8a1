"""The fsspec backend beyond the shared contract: opening by URL or filesystem, where
objects land, errors naming bucket and key, unsupported filesystems and the labelled
unsafe opt-in, and what is imported when."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

import eleanor_cloud as ec
from eleanor_cloud.backends.base import CREATE, OVERWRITE, Replace, Version
from eleanor_cloud.backends.fsspec import FsspecBackend, UnsafeBackendWarning
from eleanor_cloud.backends.local import LocalBackend
from eleanor_cloud.errors import (
    AlreadyExists,
    BucketNotFound,
    ConfigurationError,
    Conflict,
    InvalidKey,
    MissingDependency,
    NotFound,
    NotSupported,
)
from eleanor_cloud.testing.conformance import CounterState
from tests.fsspec import helpers
from tests.support.emulators import AzuriteBlob

# -- one store per object-store emulator, opened by URL -----------------------------------


@pytest.fixture(params=["s3fs", "gcsfs", "adlfs"])
def object_store(request: pytest.FixtureRequest) -> dict[str, Any]:
    """URL, options and a raw filesystem for one emulator, with a fresh bucket."""
    if request.param == "s3fs":
        url = request.getfixturevalue("moto_server_url")
        bucket = request.getfixturevalue("s3_bucket")
        return {
            "scheme": "fsspec+s3",
            "bucket": bucket,
            "fs": helpers.s3_filesystem(url),
            "options": {"endpoint_url": url, **helpers.S3_CREDENTIALS},
            "open": lambda root: FsspecBackend(helpers.s3_filesystem(url), root),
        }
    if request.param == "gcsfs":
        url = request.getfixturevalue("fake_gcs_url")
        bucket = request.getfixturevalue("gcs_bucket")
        return {
            "scheme": "gs",
            "bucket": bucket,
            "fs": helpers.gcs_filesystem(url),
            "options": {"endpoint_url": url, "token": "anon", "project": "test"},
            "open": lambda root: FsspecBackend(helpers.gcs_filesystem(url), root),
        }
    azurite: AzuriteBlob = request.getfixturevalue("azurite")
    container = request.getfixturevalue("azure_container")
    conn = azurite.connection_string
    return {
        "scheme": "az",
        "bucket": container,
        "fs": helpers.azure_filesystem(conn),
        "options": {"connection_string": conn},
        "open": lambda root: FsspecBackend(helpers.azure_filesystem(conn), root),
    }


def test_open_store_by_url_puts_objects_under_bucket_and_prefix(
    object_store: dict[str, Any],
) -> None:
    bucket = object_store["bucket"]
    store = ec.open_store(
        f"{object_store['scheme']}://{bucket}/checkpoints/prod",
        storage_options=object_store["options"],
    )
    assert isinstance(store.backend, FsspecBackend)
    assert store.prefix == "checkpoints/prod"
    created = store.create(CounterState(task_id="job-1", stage_name="extract", count=3))
    raw = object_store["fs"].cat_file(f"{bucket}/checkpoints/prod/job-1/extract.json")
    assert b'"count":3' in raw.replace(b" ", b"")
    loaded = ec.open_store(
        f"{object_store['scheme']}://{bucket}/checkpoints/prod",
        storage_options=object_store["options"],
    ).load_record("job-1", "extract", CounterState)
    assert loaded.version == created.version
    assert list(store.list_tasks()) == ["job-1"]


def test_backend_rooted_in_a_directory_of_the_bucket(object_store: dict[str, Any]) -> None:
    bucket = object_store["bucket"]
    inner = object_store["open"](f"{bucket}/team-a")
    whole = object_store["open"](bucket)
    version = inner.write("t/s.json", b"inner", CREATE)
    whole.write("t/s.json", b"outer", CREATE)  # same key, outside team-a/: no clash
    assert inner.read("t/s.json") == (b"inner", version)
    assert list(inner.list("")) == ["t/s.json"]
    assert list(whole.list("", delimiter="/")) == ["t/", "team-a/"]
    assert whole.read("team-a/t/s.json")[1] == version


def test_missing_bucket_is_named(object_store: dict[str, Any]) -> None:
    missing = f"nope-{uuid.uuid4().hex[:12]}"
    backend = object_store["open"](missing)
    with pytest.raises(BucketNotFound) as info:
        backend.write("t/s.json", b"x", CREATE)
    assert missing in str(info.value)
    assert "t/s.json" in str(info.value)
    assert info.value.key == "t/s.json"


def test_errors_name_the_store_and_key(object_store: dict[str, Any]) -> None:
    backend = object_store["open"](object_store["bucket"])
    with pytest.raises(NotFound) as missing:
        backend.read("t/absent.json")
    assert object_store["bucket"] in str(missing.value)
    assert "t/absent.json" in str(missing.value)
    v1 = backend.write("t/s.json", b"one", CREATE)
    with pytest.raises(AlreadyExists) as exists:
        backend.write("t/s.json", b"two", CREATE)
    assert "t/s.json" in str(exists.value)
    assert isinstance(exists.value.__cause__, BaseException)  # translated, not swallowed
    v2 = backend.write("t/s.json", b"two", Replace(v1))
    with pytest.raises(Conflict) as stale:
        backend.write("t/s.json", b"three", Replace(v1))
    assert not isinstance(stale.value, AlreadyExists)
    assert "t/s.json" in str(stale.value)
    assert backend.read("t/s.json") == (b"two", v2)


def test_overwrite_then_replace_uses_the_new_version(object_store: dict[str, Any]) -> None:
    backend = object_store["open"](object_store["bucket"])
    first = backend.write("t/s.json", b"one", OVERWRITE)
    second = backend.write("t/s.json", b"two", OVERWRITE)
    assert first != second
    with pytest.raises(Conflict):
        backend.write("t/s.json", b"x", Replace(first))
    third = backend.write("t/s.json", b"three", Replace(second))
    assert backend.read("t/s.json") == (b"three", third)


def test_gcs_conditional_delete_sends_if_generation_match(
    fake_gcs_url: str,
    gcs_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # fake-gcs-server ignores this precondition on DELETE (the suite's emulator gap), so
    # prove the request carries it; real GCS enforces it.
    backend = helpers.gcsfs_backend(fake_gcs_url, gcs_bucket)
    version = backend.write("t/s.json", b"one", CREATE)
    fs = backend.fs
    sent: list[tuple[Any, ...]] = []
    real_call = fs.call

    def recording_call(*args: Any, **kwargs: Any) -> Any:
        sent.append((args, kwargs))
        return real_call(*args, **kwargs)

    monkeypatch.setattr(fs, "call", recording_call)
    backend.delete("t/s.json", if_version=version)
    assert [(a[0], k) for a, k in sent] == [("DELETE", {"ifGenerationMatch": version.token})]
    with pytest.raises(NotFound):
        backend.read("t/s.json")
    with pytest.raises(Conflict):
        backend.delete("t/s.json", if_version=Version("not-a-generation"))


# -- local and memory through fsspec --------------------------------------------------------


def test_fsspec_file_url_uses_the_atomic_local_backend(tmp_path: Path) -> None:
    store = ec.open_store(f"fsspec+file://{tmp_path}/state")
    assert isinstance(store.backend, FsspecBackend)
    assert isinstance(store.backend.strategy, LocalBackend)
    assert store.backend.description == f"fsspec+{(tmp_path / 'state').as_uri()}"
    store.create(CounterState(task_id="job-1", stage_name="a"))
    assert (tmp_path / "state" / "job-1" / "a.json").is_file()
    with pytest.raises(AlreadyExists):
        store.backend.write("job-1/a.json", b"x", CREATE)


def test_memory_filesystem_objects_are_visible_through_fsspec(memory_root: str) -> None:
    from fsspec.implementations.memory import MemoryFileSystem

    store = ec.open_store(f"fsspec+memory://{memory_root}")
    store.create(CounterState(task_id="job-1", stage_name="a", count=5))
    fs: Any = MemoryFileSystem()
    assert b'"count":5' in fs.cat_file(f"{memory_root}/job-1/a.json").replace(b" ", b"")
    # A second store on the same root sees the same objects (fsspec's shared store).
    again = ec.open_store(f"fsspec+memory://{memory_root}")
    assert again.load("job-1", "a", CounterState).count == 5


def test_filesystem_instance_and_its_checks(tmp_path: Path) -> None:
    from fsspec.implementations.local import LocalFileSystem
    from fsspec.implementations.memory import MemoryFileSystem

    fs = LocalFileSystem()
    store = ec.open_store(f"fsspec+file://{tmp_path}", filesystem=fs)
    assert isinstance(store.backend, FsspecBackend)
    assert store.backend.fs is fs
    with pytest.raises(ConfigurationError, match=r"names protocol 'file'.*MemoryFileSystem"):
        ec.open_store(f"fsspec+file://{tmp_path}", filesystem=MemoryFileSystem())
    with pytest.raises(ConfigurationError, match="either storage_options or filesystem"):
        ec.open_store(
            f"fsspec+file://{tmp_path}", filesystem=fs, storage_options={"auto_mkdir": True}
        )
    with pytest.raises(ConfigurationError, match="storage_options must be a mapping"):
        ec.open_store(f"fsspec+file://{tmp_path}", storage_options=["auto_mkdir"])


@pytest.mark.parametrize(
    "key", ["", "/abs.json", "a//b.json", "../x.json", "a/./b.json", "a/", "a\x00b"]
)
def test_bad_keys_refused_before_io(memory_root: str, key: str) -> None:
    from fsspec.implementations.memory import MemoryFileSystem

    backend = FsspecBackend(MemoryFileSystem(), memory_root)
    with pytest.raises(InvalidKey):
        backend.write(key, b"x", CREATE)
    with pytest.raises(InvalidKey):
        backend.read(key)
    with pytest.raises(InvalidKey):
        backend.delete(key)
    assert list(backend.list("")) == []


def test_bad_urls_say_what_is_wrong() -> None:
    with pytest.raises(ConfigurationError, match="names no fsspec protocol"):
        ec.open_store("fsspec+://x")
    with pytest.raises(ConfigurationError, match="Protocol not known: nosuchfs"):
        ec.open_store("fsspec+nosuchfs://x/y")
    with pytest.raises(ConfigurationError, match="names no bucket"):
        ec.open_store("fsspec+s3://", storage_options={"anon": True})
    with pytest.raises(MissingDependency) as info:
        ec.open_store("fsspec+hdfs://namenode/path")  # needs pyarrow, not installed here
    assert "hdfs" in str(info.value)


# -- filesystems without atomic conditional writes -----------------------------------------


def _dir_filesystem(path: Path) -> Any:
    from fsspec.implementations.dirfs import DirFileSystem
    from fsspec.implementations.local import LocalFileSystem

    path.mkdir(parents=True, exist_ok=True)
    return DirFileSystem(path=str(path), fs=LocalFileSystem())


def test_unsupported_filesystem_raises_not_supported(tmp_path: Path) -> None:
    fs = _dir_filesystem(tmp_path / "d")
    with pytest.raises(NotSupported) as info:
        FsspecBackend(fs, "")
    message = str(info.value)
    assert "DirFileSystem" in message
    assert "'dir'" in message
    assert "compare-and-swap" in message
    assert "unsafe_unconditional=True" in message
    with pytest.raises(NotSupported, match="DirFileSystem"):
        ec.open_store(
            "fsspec+dir://",
            storage_options={"path": str(tmp_path / "d"), "target_protocol": "file"},
        )
    assert list((tmp_path / "d").iterdir()) == []  # refused before any write


def test_unsafe_unconditional_works_and_is_labelled(tmp_path: Path) -> None:
    fs = _dir_filesystem(tmp_path / "d")
    with pytest.warns(UnsafeBackendWarning, match="not atomic"):
        store = ec.open_store("fsspec+dir://", filesystem=fs, unsafe_unconditional=True)
    backend = store.backend
    assert isinstance(backend, FsspecBackend)
    assert backend.unsafe
    assert "UNSAFE" in backend.description
    # One writer at a time gets the full semantics.
    record = store.create(CounterState(task_id="job-1", stage_name="a"))
    assert (tmp_path / "d" / "job-1" / "a.json").is_file()
    with pytest.raises(AlreadyExists):
        store.create(CounterState(task_id="job-1", stage_name="a"))
    loaded = store.load_record("job-1", "a", CounterState)
    newer = store.save(loaded.value.model_copy(update={"count": 2}), replaces=loaded)
    with pytest.raises(Conflict):
        backend.write(store.stage_key("job-1", "a"), b"{}", Replace(record.version))
    assert list(store.list_tasks()) == ["job-1"]
    # Nothing needs a conditional delete, so it is refused rather than emulated too.
    with pytest.raises(NotSupported, match="conditional delete"):
        backend.delete(store.stage_key("job-1", "a"), if_version=newer.version)
    assert store.load("job-1", "a", CounterState).count == 2
    backend.delete(store.stage_key("job-1", "a"))
    backend.delete(store.stage_key("job-1", "a"))  # a missing key: a no-op
    with pytest.raises(NotFound):
        store.load("job-1", "a", CounterState)


def test_s3fs_refuses_a_botocore_without_conditional_parameters(
    moto_server_url: str,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # s3fs silently drops parameters botocore does not know: a blind write is refused.
    from eleanor_cloud.backends.fsspec import _s3fs

    monkeypatch.setattr(_s3fs, "_missing_condition_parameters", lambda: ("PutObject.IfMatch",))
    with pytest.raises(NotSupported, match=r"lacks PutObject\.IfMatch"):
        helpers.s3fs_backend(moto_server_url, s3_bucket)


# -- imports -------------------------------------------------------------------------------

_HEAVY = ("fsspec", "s3fs", "gcsfs", "adlfs", "boto3", "botocore", "azure")


def _imported_after(code: str) -> set[str]:
    probe = f"import sys\n{code}\nprint(','.join(m for m in {_HEAVY!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    ).stdout.strip()
    return set(filter(None, out.split(",")))


@pytest.mark.parametrize(
    ("code", "allowed"),
    [
        ("import eleanor_cloud", set()),
        ("import eleanor_cloud as ec; ec.open_store('memory://')", set()),
        ("import eleanor_cloud as ec; ec.open_store('fsspec+memory://x')", {"fsspec"}),
    ],
)
def test_libraries_load_only_for_the_store_opened(code: str, allowed: set[str]) -> None:
    assert _imported_after(code) == allowed


def test_unreachable_s3_endpoint_is_unavailable() -> None:
    import s3fs

    from eleanor_cloud.errors import Unavailable
    from tests.support.servers import free_port

    fs = s3fs.S3FileSystem(
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        config_kwargs={"retries": {"max_attempts": 1}},
        skip_instance_cache=True,
        **helpers.S3_CREDENTIALS,
    )
    fs.retries = 1  # s3fs's own retry loop: one attempt keeps the test fast
    backend = FsspecBackend(fs, "bucket")
    with pytest.raises(Unavailable, match=r"bucket.*t/s\.json"):
        backend.read("t/s.json")
    with pytest.raises(Unavailable, match=r"t/s\.json"):
        backend.write("t/s.json", b"x", CREATE)
