"""The operator console in a real browser (Debian's Chromium, headless, driven by Playwright),
against a live Django server, the moto-backed store, a real Worker on a thread and a local
vendor that fails first and recovers later.

An operator logs in, checks that the dashboard counts match the API, filters FAILED, opens a
message, requeues it and watches it reach COMPLETED. Screenshots of the dashboard, the list and
the message go to test-artifacts/ (with HERALD_UPDATE_DOCS=1, the dashboard also to docs/).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from django.contrib.admin.models import LogEntry
from playwright.sync_api import Browser, Page, expect, sync_playwright

from notifications.domain import Status
from notifications.worker import Worker
from tests.admin.conftest import make_user
from tests.factories import make_producer
from tests.support.waiting import wait_until
from tests.support.worker import running
from tests.vendor import Answer

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e  # a Chromium process and a live server
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "a-long-test-password"


@contextmanager
def chromium() -> Iterator[Browser]:
    """Headless Chromium. Opened inside the test, after the database work: Playwright's sync API
    runs an event loop on this thread, and Django refuses ORM calls while one runs."""
    # Never skipped: .ci/run installs Debian's chromium when it is missing.
    assert shutil.which(CHROMIUM), f"{CHROMIUM} is missing: apt-get install chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def running_worker(make_worker: Callable[..., Worker]) -> Iterator[Worker]:
    """A real Worker consuming the queue on a background thread, like `run_worker` does."""
    worker = make_worker(delays=(60.0,), max_attempts=3)
    with running(worker) as thread:
        yield worker
    assert not thread.is_alive()


class Api:
    def __init__(self, base: str, key: str) -> None:
        self.base = f"{base}/api/v1/messages"
        self.headers = {"Authorization": f"Bearer {key}"}

    def submit(self, url: str, **fields: Any) -> str:
        payload = {
            "target_url": url,
            "headers": {"Authorization": "Bearer vendor-secret-token", "X-Campaign": "autumn"},
            "body": {"event": "signup"},
            **fields,
        }
        response = requests.post(self.base, json=payload, headers=self.headers, timeout=30)
        assert response.status_code == 202, response.text
        return response.json()["id"]

    def count(self, status: Status) -> int:
        total, cursor = 0, None
        while True:
            params = {
                "status": status.value,
                "limit": 100,
                **({"cursor": cursor} if cursor else {}),
            }
            page = requests.get(self.base, params=params, headers=self.headers, timeout=30).json()
            total += len(page["results"])
            cursor = page["next_cursor"]
            if not cursor:
                return total

    def counts(self) -> dict[str, int]:
        return {status.value: self.count(status) for status in Status}


def dashboard_counts(page: Page) -> dict[str, int]:
    rows = page.locator("tr.status-count")
    return {
        rows.nth(n).get_attribute("data-status"): int(rows.nth(n).locator("td.count").inner_text())
        for n in range(rows.count())
    }


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    if name == "dashboard" and os.environ.get("HERALD_UPDATE_DOCS") == "1":
        page.screenshot(path=str(ROOT / "docs" / "dashboard.png"), full_page=True)


def test_operator_requeues_a_failed_message_and_sees_it_delivered(
    live_server, transactional_db, aws, vendor, settings, running_worker
):
    settings.DELIVERY_ALLOWED_NETWORKS = ["127.0.0.0/8"]  # the local vendor, past the SSRF guard
    producer, key = make_producer("signup-service")
    operator = make_user("olivia", permissions=("view_message", "requeue_message"))
    api = Api(live_server.url, key)

    # The vendor behind /conversions is down (410) for the first three calls, then recovers.
    down = vendor.script("/conversions", *[Answer(410, body=b"gone")] * 3, then=Answer(200))
    fine = vendor.script("/contacts", then=Answer(201))
    busy = vendor.script("/inventory", then=Answer(503, body=b"maintenance"))
    failed_ids = [api.submit(down, metadata={"user": n}) for n in range(3)]
    completed_ids = [api.submit(fine) for _ in range(4)]
    retrying_id = api.submit(busy)
    wait_until(
        lambda: (
            api.count(Status.FAILED) == 3
            and api.count(Status.COMPLETED) == 4
            and api.count(Status.QUEUED) == 1
        ),
        timeout=30,
        what="the first deliveries",
        interval=0.2,
    )

    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(20_000)

        # Log in; the admin index links the console.
        page.goto(f"{live_server.url}/admin/")
        page.fill("#id_username", operator.username)
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        expect(page.locator("#herald-console-links")).to_contain_text("Herald operations")
        page.click("#herald-console-links >> text=Dashboard")

        # Dashboard: counts match the API, queue depth, failures.
        expect(page.locator("h1")).to_have_text("Herald dashboard")
        assert (
            dashboard_counts(page)
            == api.counts()
            == {
                "PENDING": 0,
                "QUEUED": 1,
                "PROCESSING": 0,
                "COMPLETED": 4,
                "FAILED": 3,
            }
        )
        expect(page.locator("svg.herald-chart g.chart-row")).to_have_count(5)
        expect(page.locator('[data-depth="delayed"] strong')).to_have_text("1")  # the 503 retry
        expect(page.locator("#recent-failures tbody tr")).to_have_count(3)
        expect(page.locator("#failing-hosts")).to_contain_text("127.0.0.1")
        screenshot(page, "dashboard")

        # The list, filtered to FAILED.
        page.click("text=Browse messages")
        page.click("#changelist-filter >> text=FAILED")
        rows = page.locator("tr.message-row")
        expect(rows).to_have_count(3)
        assert {rows.nth(n).get_attribute("data-status") for n in range(3)} == {"FAILED"}
        assert {rows.nth(n).get_attribute("data-message-id") for n in range(3)} == set(failed_ids)
        screenshot(page, "message-list")

        # One message: masked secret, the failed attempt, then requeue with a reason.
        chosen = rows.first.get_attribute("data-message-id")
        rows.first.locator("th a").click()
        expect(page.locator("#message-status")).to_have_text("FAILED")
        expect(page.locator("#message-request")).to_contain_text("********")
        expect(page.locator("#message-request")).not_to_contain_text("vendor-secret-token")
        expect(page.locator("#message-attempts")).to_contain_text("HTTP 410")
        screenshot(page, "message-detail")
        page.click("#requeue-button")
        expect(page.locator("#requeue-targets")).to_contain_text(chosen)
        page.fill("textarea[name=reason]", "conversions API is back")
        page.click("#confirm-requeue")
        expect(page.locator("ul.messagelist")).to_contain_text("1 requeued.")
        expect(page.locator("#requeue-button")).to_have_count(0)

        # The vendor has recovered: the worker delivers it.
        def shows_completed() -> bool:
            if page.locator("#message-status").inner_text() == "COMPLETED":
                return True
            page.reload()
            return False

        wait_until(
            shows_completed, timeout=30, what="the requeued message to complete", interval=0.5
        )
        timeline = page.locator("#message-history")
        expect(timeline).to_contain_text(f"operator:{operator.username}")
        expect(timeline).to_contain_text("conversions API is back")
        expect(page.locator("#message-attempts tbody tr")).to_have_count(2)
        screenshot(page, "message-detail-completed")

        # Back on the dashboard, the counts still match the API.
        page.goto(f"{live_server.url}/admin/herald/dashboard/")
        assert dashboard_counts(page) == api.counts()
        assert dashboard_counts(page)["COMPLETED"] == 5
        assert dashboard_counts(page)["FAILED"] == 2
        page.close()

    assert set(completed_ids).isdisjoint(failed_ids) and retrying_id not in failed_ids
    assert list(LogEntry.objects.values_list("object_id", "user__username")) == [
        (chosen, operator.username)
    ]


def test_operator_delivers_a_retry_now_then_pauses_and_resumes_its_host(
    live_server, transactional_db, aws, vendor, settings, make_worker
):
    """Deliver now from a message's page, then a pause seen on the dashboard: nothing goes to
    the paused host until the operator resumes it."""
    settings.DELIVERY_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    _, key = make_producer("orders-service")
    operator = make_user("otto", permissions=("view_message", "deliver_now", "pause_host"))
    api = Api(live_server.url, key)
    url = vendor.script("/orders", Answer(503, body=b"busy"), then=Answer(200))
    worker = make_worker(delays=(600.0,), max_attempts=3, host_guard=True)

    with running(worker), chromium() as browser:
        retrying = api.submit(url)
        wait_until(lambda: len(vendor.requests_to("/orders")) == 1, timeout=30, what="a first call")
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(20_000)
        page.goto(f"{live_server.url}/admin/login/")
        page.fill("#id_username", operator.username)
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")

        # The retry is ten minutes away: pull it forward.
        page.goto(f"{live_server.url}/admin/herald/messages/{retrying}/")
        wait_until(
            lambda: page.reload() or page.locator("#deliver-now-form").count() == 1,
            timeout=20,
            what="the retry to be scheduled",
            interval=0.5,
        )
        page.fill("#id_deliver_reason", "orders API answers again")
        page.click("#deliver-now-button")
        expect(page.locator("ul.messagelist")).to_contain_text("Pulled forward")

        def status_shown(status: str) -> bool:
            if page.locator("#message-status").inner_text() == status:
                return True
            page.reload()
            return False

        wait_until(lambda: status_shown("COMPLETED"), timeout=30, what="delivery", interval=0.5)
        expect(page.locator("#message-history")).to_contain_text(
            "deliver now: orders API answers again"
        )

        # Pause the host from its page; the dashboard shows it, with why.
        page.click("text=Host 127.0.0.1")
        page.fill("#id_reason", "the vendor asked for a quiet hour")
        page.click("#pause-button")
        expect(page.locator("ul.messagelist")).to_contain_text("127.0.0.1 paused until resumed.")
        expect(page.locator("#pause-state")).to_contain_text("the vendor asked for a quiet hour")
        page.goto(f"{live_server.url}/admin/herald/dashboard/")
        held = page.locator('#hosts-held-back tr[data-state="paused"]')
        expect(held).to_contain_text("127.0.0.1")
        expect(held).to_contain_text("the vendor asked for a quiet hour")
        expect(held).to_contain_text(f"operator:{operator.username}")
        screenshot(page, "dashboard-host-paused")

        # A new message waits while the host is paused, and goes once it is resumed.
        waiting = api.submit(url)
        wait_until(lambda: worker.waiting == 1, timeout=20, what="the message to wait")
        calls = len(vendor.requests_to("/orders"))
        page.click('#hosts-held-back a:text("127.0.0.1")')
        page.fill("#id_resume_reason", "quiet hour over")
        page.click("#resume-button")
        expect(page.locator("ul.messagelist")).to_contain_text("127.0.0.1 resumed.")
        assert calls == 2  # nothing went while paused
        page.goto(f"{live_server.url}/admin/herald/messages/{waiting}/")
        wait_until(lambda: status_shown("COMPLETED"), timeout=30, what="delivery", interval=0.5)
        # The chart of attempts per hour: this hour's three calls, one of them failed.
        page.goto(f"{live_server.url}/admin/herald/dashboard/")
        hours = page.locator("#attempts-per-hour g.hour")
        expect(hours).to_have_count(24)
        assert (
            hours.last.get_attribute("data-delivered"),
            hours.last.get_attribute("data-failed"),
        ) == ("2", "1")
        screenshot(page, "dashboard-attempts-per-hour")
        page.goto(f"{live_server.url}/admin/herald/hosts/127.0.0.1/")
        events = page.locator("tr.host-event")
        expect(events).to_have_count(2)
        expect(events.first).to_contain_text("quiet hour over")
        page.close()

    assert len(vendor.requests_to("/orders")) == 3
    assert list(LogEntry.objects.order_by("pk").values_list("change_message", flat=True)) == [
        "Delivered now: orders API answers again",
        "Paused until resumed: the vendor asked for a quiet hour",
        "Resumed: quiet hour over",
    ]
