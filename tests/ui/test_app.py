"""The dashboard over HTTP (Starlette's TestClient): pages, filters, escaping, headers,
read-only-ness, errors, and what each page costs in store requests."""

from __future__ import annotations

import re
from typing import Any

import pytest

import eleanor_cloud as ec
from eleanor_cloud.errors import Unavailable
from eleanor_cloud.testing.conformance.wrappers import CountingBackend
from tests.ui.seed import ERROR_ID, EXPECTED, HOSTILE, HOSTILE_HOLDER, ODD_ID

ROW = re.compile(
    r'<tr class="task-row" data-status="([A-Z]+)"><td><a class="id" href="[^"]+">([^<]+)</a>'
)


def rows(html: str) -> dict[str, str]:
    return {task: status for status, task in ROW.findall(html)}


def test_the_table_lists_every_seeded_task_with_its_status(client: Any) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert rows(page.text) == {t: s for t, (s, _) in EXPECTED.items()}


@pytest.mark.parametrize("status", ["ERROR", "COMPLETE", "RUNNING", "CANCELED", "CREATED"])
def test_the_status_filter_shows_only_that_status(client: Any, status: str) -> None:
    found = rows(client.get("/", params={"status": status.lower()}).text)
    assert found == {t: s for t, (s, _) in EXPECTED.items() if s == status}
    assert found


def test_search_by_prefix_and_with_a_filter(client: Any) -> None:
    assert set(rows(client.get("/", params={"q": "etl"}).text)) == {"etl-001", "etl-002", ERROR_ID}
    both = rows(client.get("/", params={"q": "etl", "status": "ERROR"}).text)
    assert both == {ERROR_ID: "ERROR"}
    assert rows(client.get("/", params={"q": "Odd."}).text) == {ODD_ID: "COMPLETE"}


def test_a_prefix_no_id_can_have_costs_no_request(
    client: Any, counted: tuple[ec.StateStore, CountingBackend]
) -> None:
    page = client.get("/", params={"q": "<script>x"})
    assert page.status_code == 200 and rows(page.text) == {}
    assert "&lt;script&gt;x" in page.text and "<script>x" not in page.text
    assert "contain only letters" in page.text
    assert sum(counted[1].calls.values()) == 0


def test_paging_walks_every_task_once(counted: tuple[ec.StateStore, CountingBackend]) -> None:
    from starlette.testclient import TestClient

    from eleanor_cloud.ui.app import create_app

    client = TestClient(create_app(counted[0], page_size=3), base_url="http://127.0.0.1")
    seen: list[str] = []
    url = "/"
    while True:
        page = client.get(url)
        found = list(rows(page.text))
        assert 0 < len(found) <= 3
        seen += found
        more = re.search(r'rel="next" href="([^"]+)"', page.text)
        if more is None:
            break
        url = more.group(1).replace("&amp;", "&")
    assert seen == sorted(EXPECTED)


@pytest.mark.parametrize("task_id", sorted(EXPECTED))
def test_the_task_page_draws_one_bar_per_attempt(client: Any, task_id: str) -> None:
    page = client.get(f"/tasks/{task_id}")
    assert page.status_code == 200
    assert page.text.count('<rect class="bar ') == EXPECTED[task_id][1]
    assert f'<span class="badge s-{EXPECTED[task_id][0]}">' in page.text


def test_hostile_text_is_escaped_everywhere(client: Any) -> None:
    page = client.get(f"/tasks/{ERROR_ID}").text
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    listing = client.get("/", params={"status": "ERROR"}).text
    assert "<script>alert" not in listing and "&lt;script&gt;alert(1)" in listing
    odd = client.get(f"/tasks/{ODD_ID}").text
    assert HOSTILE_HOLDER not in odd and "&lt;b&gt;evil&lt;/b&gt;host/1/x" in odd
    assert HOSTILE not in client.get("/tasks/new-1").text  # manifest metadata
    # No inline script or style at all: the CSP would refuse them.
    for html in (page, listing, odd):
        assert " style=" not in html and "<style" not in html
        assert re.findall(r"<script[^>]*>", html) == ['<script src="/static/app.js" defer>']


def test_records_progress_and_fan_out_counts(client: Any) -> None:
    page = client.get("/tasks/etl-001").text
    assert "40 / 40 records" in page and "ok 34" in page and "fail 6" in page
    assert "6 failed ids" in page
    fan = client.get("/tasks/fan-1").text
    assert "3 of 3 shards ended" in fan


def test_the_lease_holder_and_expiry_are_shown(client: Any) -> None:
    page = client.get("/tasks/etl-001").text
    assert "epoch 1" in page and "released" in page and "expires" in page


def test_every_response_is_hardened_and_only_get_is_allowed(client: Any) -> None:
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        for path in ("/", f"/tasks/{ERROR_ID}", "/nowhere"):
            refused = client.request(method, path)
            assert refused.status_code == 405 and refused.headers["allow"] == "GET, HEAD"
    for response in (
        client.get("/"),
        client.get("/tasks/nope"),
        client.post("/"),
        client.get("/static/style.css"),
        client.get("/", headers={"host": "attacker.example"}),
    ):
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
    assert client.get("/", headers={"host": "attacker.example"}).status_code == 421
    assert client.head("/").status_code == 200


def test_static_files_and_unknown_pages(client: Any) -> None:
    assert client.get("/static/style.css").headers["content-type"].startswith("text/css")
    assert client.get("/static/app.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/static/favicon.svg").headers["content-type"] == "image/svg+xml"
    assert client.get("/static/../app.py").status_code == 404
    assert client.get("/static/nothing.js").status_code == 404
    missing = client.get("/tasks/no-such-task")
    assert (
        missing.status_code == 404
        and "no task &#x27;no-such-task&#x27; in memory://" in missing.text
    )
    bad = client.get("/tasks/_bad")
    assert bad.status_code == 400 and "invalid task_id" in bad.text
    assert client.get("/", params={"after": "../x"}).status_code == 200


def test_browsing_makes_no_write_and_costs_what_the_docs_say(
    client: Any, counted: tuple[ec.StateStore, CountingBackend]
) -> None:
    calls = counted[1].calls
    client.get("/")
    table = dict(calls)
    n = len(EXPECTED)
    # The scan until the index lands: 1 LIST of the store, then per task 1 GET manifest,
    # 1 LIST of its folder, and a GET per stage object it has.
    assert table["list"] == 1 + n
    calls.clear()
    client.get("/tasks/etl-001")
    # manifest, LIST, 3 stage objects, lease, transform's progress (a records stage).
    assert dict(calls) == {"read": 6, "list": 1}
    calls.clear()
    client.get("/tasks/fan-1")
    # manifest, LIST, the stage, lease, progress (none), plan; LIST done/.
    assert dict(calls) == {"read": 5, "list": 2}
    for path in ("/?status=ERROR", "/?q=etl", f"/tasks/{ODD_ID}", "/tasks/nope", "/static/app.js"):
        client.get(path)
    assert calls["write"] == 0 and calls["delete"] == 0


class _Down:
    """A backend whose every request fails as an unreachable endpoint does."""

    description = "s3://far-away at http://127.0.0.1:9"

    def read(self, key: str) -> Any:
        raise Unavailable(f"{self.description}: connection refused reading {key!r}", key=key)

    def write(self, key: str, data: bytes, mode: Any) -> Any:
        raise AssertionError("the dashboard wrote")

    def delete(self, key: str, if_version: Any = None) -> None:
        raise AssertionError("the dashboard deleted")

    def list(self, prefix: str, delimiter: str | None = None) -> Any:
        raise Unavailable(f"{self.description}: connection refused listing {prefix!r}")


class _Broken(_Down):
    def list(self, prefix: str, delimiter: str | None = None) -> Any:
        raise ZeroDivisionError("a bug")


def test_an_unreachable_store_is_an_error_page_naming_it() -> None:
    from starlette.testclient import TestClient

    from eleanor_cloud.ui.app import create_app

    client = TestClient(create_app(ec.StateStore(_Down(), "p")), base_url="http://127.0.0.1")
    for path in ("/", "/tasks/t1"):
        page = client.get(path)
        assert page.status_code == 503
        assert "The store cannot be read" in page.text and "s3://far-away" in page.text
        assert "Traceback" not in page.text


def test_an_unexpected_error_is_a_page_not_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    from starlette.testclient import TestClient

    from eleanor_cloud.ui.app import create_app

    client = TestClient(create_app(ec.StateStore(_Broken())), base_url="http://127.0.0.1")
    page = client.get("/")
    assert page.status_code == 500 and "Unexpected error" in page.text
    assert "ZeroDivisionError" in page.text and "Traceback" not in page.text
    assert "a bug" in caplog.text  # the details go to the server's log


def test_a_corrupt_task_is_a_corrupt_row_counted_as_error() -> None:
    from starlette.testclient import TestClient

    from eleanor_cloud.ui.app import create_app

    store = ec.open_store("memory://")
    store.backend.write("bad/_task.json", b"{not json", ec.CREATE)
    client = TestClient(create_app(store), base_url="http://127.0.0.1")
    assert rows(client.get("/").text) == {"bad": "CORRUPT"}
    # Written by hand, so not in the task index until it is rebuilt, which files a task
    # that cannot be read under ERROR: "what failed?" finds it.
    assert rows(client.get("/?status=ERROR").text) == {}
    from eleanor_cloud.engine.task_index import rebuild_index

    assert rebuild_index(store).marked == 1
    assert rows(client.get("/?status=ERROR").text) == {"bad": "CORRUPT"}
    assert rows(client.get("/?status=COMPLETE").text) == {}
    page = client.get("/tasks/bad")
    assert page.status_code == 500 and "cannot be read" in page.text


def test_the_store_label_never_shows_credentials() -> None:
    from eleanor_cloud.ui.data import store_label

    class Leaky(_Down):
        description = "weird://user:s3cret@host/bucket?X-Amz-Signature=abc"

    label = store_label(ec.StateStore(Leaky(), "runs"))
    assert "s3cret" not in label and "Signature" not in label
    assert label == "weird://host/bucket (prefix runs/)"
