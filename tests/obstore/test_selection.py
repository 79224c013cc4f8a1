"""How the obstore backend is picked and opened, on every store it serves: the extra is
optional and lazy, URLs and ``backend=`` map to it, options are refused where they
cannot apply, and Azure, local and memory specifics (container errors, lock files,
content-hash versions shared with the local-directory backend)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from eleanor_cloud.backends.base import CREATE, Replace
from eleanor_cloud.backends.local import LocalBackend
from eleanor_cloud.backends.obstore import ObstoreBackend, from_url
from eleanor_cloud.errors import (
    BucketNotFound,
    ConfigurationError,
    InvalidKey,
    MissingDependency,
    NotFound,
)
from eleanor_cloud.store.registry import open_store
from tests.obstore.helpers import azure_backend, local_backend
from tests.support.emulators import AzuriteBlob

ROOT = Path(__file__).resolve().parents[2]


def _python(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )


def test_import_and_other_stores_never_import_obstore() -> None:
    out = _python("""
        import sys
        import eleanor_cloud as ec
        ec.open_store("memory://").backend
        ec.open_store("file:///tmp/eleanor-obstore-lazy")
        assert "obstore" not in sys.modules, sorted(m for m in sys.modules if "obstore" in m)
        ec.open_store("obstore+memory://")
        assert "obstore" in sys.modules
        """)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize(
    ("url", "backend"),
    [("obstore+s3://bucket/prefix", None), ("s3://bucket/prefix", "obstore"), (".", "obstore")],
)
def test_without_the_extra_opening_says_what_to_install(url: str, backend: str | None) -> None:
    out = _python(f"""
        import sys
        sys.modules["obstore"] = None  # as if eleanor-cloud[obstore] were not installed
        from eleanor_cloud import open_store
        from eleanor_cloud.errors import MissingDependency
        try:
            open_store({url!r}, backend={backend!r})
        except MissingDependency as exc:
            print(exc.install, "|", exc)
        """)
    assert out.returncode == 0, out.stderr
    install, _, message = out.stdout.strip().partition(" | ")
    assert install == "eleanor-cloud[obstore]"
    assert "pip install 'eleanor-cloud[obstore]'" in message
    assert issubclass(MissingDependency, ImportError)


def test_urls_and_backend_argument_map_to_the_store_kinds(tmp_path: Path) -> None:
    local = open_store(str(tmp_path / "d"), backend="obstore").backend
    assert isinstance(local, ObstoreBackend)
    assert local.description == f"obstore+file://{tmp_path / 'd'}"
    assert open_store(f"obstore+file://{tmp_path / 'e'}").backend.description.startswith(
        "obstore+file://"
    )
    assert open_store("memory://", backend="obstore").backend.description == "obstore+memory://"
    assert open_store("gs://b/p", backend="obstore").backend.description == "obstore+gs://b"
    azure = open_store("az://c/p", backend="obstore", account_name="acct").backend
    assert azure.description == "obstore+az://c"
    assert azure.endpoint == "https://acct.blob.core.windows.net"  # type: ignore[attr-defined]
    fsspec = open_store("memory://x", backend="fsspec").backend
    assert not isinstance(fsspec, ObstoreBackend)


@pytest.mark.parametrize(
    ("url", "options", "match"),
    [
        ("s3://b", {"backend": "rust"}, "backend must be one of"),
        ("gs://b", {"backend": "boto3"}, "cannot serve"),
        ("obstore+s3://b", {"backend": "fsspec"}, "cannot serve"),
        ("ftp://b", {"backend": "obstore"}, "serves s3://"),
        ("obstore+ftp://b", {}, "not an obstore URL"),
        ("obstore+s3://", {}, "names no bucket"),
        ("obstore+s3://b?x=1", {}, "query or fragment"),
        ("obstore+az://c", {"region_name": "eu-west-1"}, "region_name do not apply"),
        ("obstore+file:///tmp/x", {"config": {}}, "config do not apply"),
        ("obstore+s3://b", {"store": object(), "region_name": "x"}, "either store="),
        ("obstore+s3://b", {"store": object()}, "must be an obstore S3Store"),
        ("obstore+s3://b", {"config": {"no_such_key": 1}}, "obstore refused the configuration"),
        ("obstore+s3://b", {"conflict_retries": -1}, "conflict_retries"),
    ],
)
def test_bad_options_are_refused_before_any_request(
    url: str, options: dict[str, object], match: str
) -> None:
    with pytest.raises(ConfigurationError, match=match):
        open_store(url, **options)  # type: ignore[arg-type]


def test_an_injected_store_is_used_as_is() -> None:
    from obstore.store import S3Store

    mine = S3Store("bucket", region="eu-west-1")
    backend, prefix = from_url("obstore+s3://bucket/runs", store=mine)
    assert backend.store is mine and prefix == "runs"
    with pytest.raises(ConfigurationError, match="is for 'bucket', not 'other'"):
        from_url("obstore+s3://other/runs", store=mine)


def test_azure_missing_container_and_missing_blob(
    azurite: AzuriteBlob, azure_container: str
) -> None:
    backend = azure_backend(azurite.url, azure_container)
    with pytest.raises(NotFound, match=rf"az://{azure_container}/nope.json: no such object"):
        backend.read("nope.json")
    backend.delete("nope.json")  # Azure answers 404; deleting nothing is done
    gone = azure_backend(azurite.url, "no-such-container")
    with pytest.raises(BucketNotFound, match="az://no-such-container: container does not exist"):
        gone.read("a.json")
    with pytest.raises(BucketNotFound):
        gone.write("a.json", b"x", CREATE)


def test_local_lock_files_stay_hidden_and_reserved_names_are_refused(tmp_path: Path) -> None:
    backend = local_backend(str(tmp_path))
    v1 = backend.write("t/a.json", b"one", CREATE)
    backend.write("t/a.json", b"two", Replace(v1))
    assert sorted(os.listdir(tmp_path / "t")) == [".eleanor-a.json.lock", "a.json"]
    assert list(backend.list("")) == ["t/a.json"]
    assert list(backend.list("", delimiter="/")) == ["t/"]
    with pytest.raises(InvalidKey):
        backend.write("t/.eleanor-x", b"x", CREATE)
    backend.delete("t/a.json")
    assert os.listdir(tmp_path) == []  # object, lock file and emptied directory gone
    assert list(backend.list("", delimiter="/")) == []


def test_local_versions_are_the_local_backends_so_both_share_a_directory(tmp_path: Path) -> None:
    fast, classic = local_backend(str(tmp_path)), LocalBackend(tmp_path, fsync=False)
    v1 = fast.write("t/a.json", b"one", CREATE)
    assert classic.read("t/a.json") == (b"one", v1)
    v2 = classic.write("t/a.json", b"two", Replace(v1))
    assert fast.read("t/a.json") == (b"two", v2)
    fast.write("t/a.json", b"three", Replace(v2))
    assert list(classic.list("")) == list(fast.list("")) == ["t/a.json"]


def test_a_boto3_session_becomes_obstores_credential_provider() -> None:
    import boto3
    from obstore.auth.boto3 import Boto3CredentialProvider

    backend, _ = from_url("obstore+s3://bucket", session=boto3.Session(region_name="eu-west-1"))
    assert isinstance(backend.store.credential_provider, Boto3CredentialProvider)
    with pytest.raises(ConfigurationError, match="either session= or credential_provider="):
        from_url("obstore+s3://bucket", session=boto3.Session(), credential_provider=object())


def test_the_lambda_handlers_store_variable_selects_obstore(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from eleanor_cloud.aws.env import store_from_env

    monkeypatch.setenv("ELEANOR_STORE", f"obstore+file://{tmp_path}")
    assert isinstance(store_from_env().backend, ObstoreBackend)


def test_a_forked_child_refuses_at_once_instead_of_hanging(tmp_path: Path) -> None:
    # In a subprocess: forking pytest itself (with its threads) would be its own hazard.
    out = _python(f"""
        import os, signal
        from eleanor_cloud.errors import ConfigurationError
        from tests.obstore.helpers import local_backend

        backend = local_backend({str(tmp_path)!r})
        backend.write("a.json", b"x", __import__("eleanor_cloud").backends.base.CREATE)
        pid = os.fork()
        if pid == 0:
            signal.alarm(10)  # obstore itself would wait forever here
            try:
                backend.read("a.json")
            except ConfigurationError as exc:
                os._exit(0 if "forked from it" in str(exc) else 2)
            os._exit(3)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
        print(backend.read("a.json")[0].decode())  # the parent goes on
        """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "x"]


def test_no_credentials_at_all_is_access_denied_naming_what_to_set() -> None:
    # A subprocess without any AWS variable, and the instance metadata service pointed at
    # a closed port: the same answer wherever the suite runs (on EC2 or not).
    from tests.support.servers import free_port

    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    script = textwrap.dedent(f"""
        from eleanor_cloud.backends.obstore import from_url
        from eleanor_cloud.errors import AccessDenied
        backend, _ = from_url(
            "obstore+s3://bucket/runs",
            endpoint_url="http://127.0.0.1:{free_port()}",
            config={{"metadata_endpoint": "http://127.0.0.1:{free_port()}"}},
        )
        try:
            backend.read("runs/a.json")
        except AccessDenied as exc:
            print(exc)
        """)
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
        env=dict(env, PYTHONPATH=str(ROOT)),
    )
    assert out.returncode == 0, out.stderr
    message = out.stdout.strip()
    assert message.startswith("s3://bucket/runs/a.json: read failed: no usable credentials")
    assert "AWS_ACCESS_KEY_ID" in message and "session=" in message
