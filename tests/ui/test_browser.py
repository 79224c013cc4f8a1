"""The dashboard in a real headless Chromium (Debian's, driven by Playwright), served by
uvicorn on 127.0.0.1 over a moto HTTP S3 server. Screenshots go to
``$ELEANOR_ARTIFACTS/ui/`` (default ``.eleanor/artifacts/ui/``)."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import eleanor_cloud as ec
from eleanor_cloud.testing.conformance.wrappers import CountingBackend
from tests.ui.conftest import Served
from tests.ui.seed import ERROR_ID, EXPECTED, HOSTILE, ODD_ID, Extract, _engine, seed

sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = os.environ.get("ELEANOR_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("ELEANOR_ARTIFACTS", ".eleanor/artifacts")) / "ui"

if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (set ELEANOR_CHROMIUM)", allow_module_level=True)


class Session:
    """Everything one browsing session shares: the stores, the server, the browser."""

    def __init__(self, seeding: ec.StateStore, counting: CountingBackend, url: str) -> None:
        self.seeding, self.counting, self.url = seeding, counting, url
        self.dialogs: list[str] = []
        self.errors: list[str] = []


@pytest.fixture(scope="module")
def session(moto_server_url: str) -> Iterator[tuple[Session, Any]]:
    import boto3

    from eleanor_cloud.backends.s3 import S3Backend
    from eleanor_cloud.ui.app import create_app

    bucket = f"ui-{uuid.uuid4().hex[:16]}"
    boto3.client("s3", endpoint_url=moto_server_url, region_name="us-east-1").create_bucket(
        Bucket=bucket
    )
    seeding = ec.StateStore(
        S3Backend(bucket, endpoint_url=moto_server_url, region_name="us-east-1"), "ui"
    )
    seed(seeding)
    counting = CountingBackend(
        S3Backend(bucket, endpoint_url=moto_server_url, region_name="us-east-1")
    )
    app = create_app(ec.StateStore(counting, "ui"), refresh_seconds=2)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with Served(app) as served, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield Session(seeding, counting, served.url), browser
        finally:
            browser.close()


@pytest.fixture
def page(session: tuple[Session, Any]) -> Iterator[Any]:
    state, browser = session
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    tab = context.new_page()
    tab.on("dialog", lambda d: (state.dialogs.append(d.message), d.dismiss()))
    tab.on("console", lambda m: state.errors.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: state.errors.append(str(e)))
    # A refresh fetch cut short by a navigation is aborted, not failed.
    tab.on(
        "requestfailed",
        lambda r: (
            None
            if "ERR_ABORTED" in (r.failure or "")
            else state.errors.append(f"failed: {r.url} {r.failure}")
        ),
    )
    yield tab
    context.close()
    assert state.dialogs == [], "a stored string ran as script"
    assert state.errors == [], "console errors (CSP violations, failed loads, script errors)"


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def listed(page: Any) -> dict[str, str]:
    ids = page.locator("tr.task-row a.id").all_inner_texts()
    statuses = page.locator("tr.task-row .badge").all_inner_texts()
    return dict(zip(ids, statuses, strict=True))


def test_the_table_lists_the_seeded_tasks(session: tuple[Session, Any], page: Any) -> None:
    page.goto(session[0].url + "/")
    assert listed(page) == {t: s for t, (s, _) in EXPECTED.items()}
    assert "s3://" in page.locator(".store").inner_text()
    shot(page, "tasks")
    page.get_by_role("link", name=ODD_ID, exact=True).click()  # odd ids link correctly
    page.wait_for_selector("h1.task-id")
    assert page.locator("h1.task-id").inner_text() == ODD_ID


def test_the_status_filter_and_search(session: tuple[Session, Any], page: Any) -> None:
    page.goto(session[0].url + "/")
    page.get_by_role("link", name="error", exact=True).click()
    page.wait_for_url(re.compile(r"status=ERROR"))
    assert listed(page) == {ERROR_ID: "ERROR"}
    shot(page, "tasks-error")
    page.get_by_role("link", name="all", exact=True).click()
    page.get_by_role("searchbox").fill("etl")
    page.get_by_role("searchbox").press("Enter")
    page.wait_for_url(re.compile(r"q=etl"))
    assert set(listed(page)) == {"etl-001", "etl-002", ERROR_ID}
    page.get_by_role("link", name="complete", exact=True).click()  # keeps the search
    page.wait_for_url(re.compile(r"status=COMPLETE"))
    assert listed(page) == {"etl-001": "COMPLETE", "etl-002": "COMPLETE"}


@pytest.mark.parametrize("task_id", [ERROR_ID, ODD_ID, "etl-001", "fan-1", "run-1"])
def test_the_task_page_draws_the_timeline(
    session: tuple[Session, Any], page: Any, task_id: str
) -> None:
    page.goto(f"{session[0].url}/tasks/{task_id}")
    assert page.locator("h1.task-id").inner_text() == task_id
    bars = page.locator("svg.timeline rect.bar")
    assert bars.count() == EXPECTED[task_id][1]
    box = bars.first.bounding_box()
    assert box is not None and box["width"] >= 2 and box["height"] > 5  # drawn, visible
    shot(page, f"task-{task_id}")


def test_a_script_in_a_stage_message_is_shown_as_text(
    session: tuple[Session, Any], page: Any
) -> None:
    page.goto(f"{session[0].url}/tasks/{ERROR_ID}")
    message = page.locator('tr.stage-row[data-stage="transform"] .msg-full')
    assert message.inner_text() == f"RuntimeError: {HOSTILE}"
    assert page.locator("main script, main img").count() == 0
    assert page.evaluate("document.querySelectorAll('script').length") == 1  # app.js only


def test_records_progress_bars(session: tuple[Session, Any], page: Any) -> None:
    page.goto(f"{session[0].url}/tasks/etl-001")
    records = page.locator('.records[data-stage="transform"]')
    assert "40 / 40 records" in records.inner_text()
    ok = records.locator("svg.bar-records rect.ok").bounding_box()
    fail = records.locator("svg.bar-records rect.fail").bounding_box()
    assert ok is not None and fail is not None and ok["width"] > 4 * fail["width"]


def test_auto_refresh_shows_a_new_task_without_a_reload(
    session: tuple[Session, Any], page: Any
) -> None:
    state = session[0]
    page.goto(state.url + "/?q=late")
    assert listed(page) == {}
    page.evaluate("window.__same_document = true")
    _engine(state.seeding, "late-1", [Extract()]).run()
    page.wait_for_selector('a.id:text-is("late-1")', timeout=15_000)
    assert page.evaluate("window.__same_document") is True  # swapped in, not reloaded


def test_without_javascript_the_page_works_and_refreshes(session: tuple[Session, Any]) -> None:
    state, browser = session
    context = browser.new_context(java_script_enabled=False)
    tab = context.new_page()
    try:
        response = tab.goto(state.url + "/?status=ERROR")
        assert [t.strip() for t in tab.locator("a.id").all_inner_texts()] == [ERROR_ID]
        # The <noscript> meta refresh reloads the page (every 2 s here).
        assert '<noscript><meta http-equiv="refresh" content="2"></noscript>' in response.text()
    finally:
        context.close()


def test_the_whole_session_made_no_write(session: tuple[Session, Any]) -> None:
    calls = session[0].counting.calls
    assert calls["read"] > 0 and calls["list"] > 0
    assert calls["write"] == 0 and calls["delete"] == 0
