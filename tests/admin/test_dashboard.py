"""The dashboard: counts per status (chart and table), queue depths, recent failures, failing
hosts; staff with `view_message` only."""

import re

import pytest

from notifications.domain import Status
from notifications.queue import default_queue
from tests.factories import make_producer

URL = "/admin/herald/dashboard/"


def count_of(html: str, status: Status) -> int:
    row = re.search(
        rf'<tr class="status-count" data-status="{status}">.*?<td class="count">(\d+)</td>',
        html,
        re.S,
    )
    assert row, f"no row for {status}"
    return int(row.group(1))


def test_dashboard_shows_counts_queue_failures_and_hosts(console, put_message):
    producer, _ = make_producer("billing")
    for status, how_many in [(Status.QUEUED, 2), (Status.COMPLETED, 3), (Status.FAILED, 1)]:
        for _ in range(how_many):
            put_message(status, producer_id=producer.public_id)
    failed = put_message(
        Status.FAILED,
        url="https://crm.example.com/contacts",
        error="HTTP 410: contact endpoint retired",
        producer_id=producer.public_id,
    )
    default_queue().send(failed.id)

    response = console.get(URL)

    assert response.status_code == 200
    html = response.content.decode()
    assert [count_of(html, status) for status in Status] == [0, 2, 0, 3, 2]
    assert '<td id="total-count">7</td>' in html
    assert 'data-status="COMPLETED" data-count="3"' in html  # the SVG chart's bar
    assert "<svg" in html and "http://" not in html.split("<svg", 1)[1].split("</svg>")[0].replace(
        'xmlns="http://www.w3.org/2000/svg"', ""
    )
    assert re.search(r'data-depth="visible"><strong>1</strong>', html)
    assert re.search(r'data-depth="dead_letters"><strong>0</strong>', html)
    # the most recent failure first, with its error, producer and current status
    recent = html.split('id="recent-failures"', 1)[1]
    assert recent.index(failed.id) < recent.index("vendor.example.com")
    assert "HTTP 410: contact endpoint retired" in recent
    assert "billing (prd_" in recent
    assert 'status-FAILED">FAILED' in recent
    hosts = html.split('id="failing-hosts"', 1)[1].split('id="recent-failures"', 1)[0]
    assert re.search(r'data-host="vendor.example.com">.*?<td class="count">1</td>', hosts, re.S)
    assert re.search(r'data-host="crm.example.com">.*?<td class="count">1</td>', hosts, re.S)
    assert "?status=FAILED&amp;q=crm.example.com" in hosts
    # looks like the admin: breadcrumbs back to the index, the admin's stylesheet, no CDN
    assert '<div class="breadcrumbs">' in html and 'href="/admin/"' in html
    assert "/static/admin/css/base.css" in html
    assert "cdn" not in html.lower()


def test_a_requeued_failure_shows_its_status_now(console, put_message):
    from notifications import services

    failed = put_message(Status.FAILED)
    services.message_requeue(message_id=failed.id, actor="operator:tests")

    html = console.get(URL).content.decode()

    recent = html.split('id="recent-failures"', 1)[1]
    assert failed.id in recent
    assert 'status-QUEUED">QUEUED' in recent
    assert count_of(html, Status.FAILED) == 0


def test_empty_store(console):
    html = console.get(URL).content.decode()
    assert "No failures recorded." in html
    assert [count_of(html, status) for status in Status] == [0, 0, 0, 0, 0]


def test_the_admin_index_links_the_console_for_viewers_only(client, viewer, db):
    from tests.admin.conftest import make_user

    client.force_login(viewer)
    index = client.get("/admin/").content.decode()
    assert 'href="/admin/herald/dashboard/"' in index
    assert 'href="/admin/herald/messages/"' in index

    client.force_login(make_user("stan"))  # staff, no message permission
    assert "/admin/herald/" not in client.get("/admin/").content.decode()


@pytest.mark.parametrize("method", ["post", "put", "delete"])
def test_only_get(console, method):
    assert getattr(console, method)(URL).status_code == 405
