"""The message browser: newest first, filters, search, cursor pagination both ways."""

import re

from notifications.clock import ManualClock
from notifications.domain import Status, format_timestamp
from tests.factories import make_producer

URL = "/admin/herald/messages/"


def listed(response):
    assert response.status_code == 200
    return re.findall(
        r'<tr class="message-row" data-message-id="([^"]+)"', response.content.decode()
    )


def put_series(put_message, count, **fields):
    """`count` messages created one second apart; returned newest first."""
    clock = ManualClock()
    clock.advance(-count)
    messages = []
    for _ in range(count):
        clock.advance(1)
        messages.append(put_message(created_at=format_timestamp(clock.now()), **fields))
    return list(reversed(messages))


def test_columns_and_newest_first(console, put_message):
    producer, _ = make_producer("billing")
    older = put_message(Status.COMPLETED, producer_id=producer.public_id)
    newer = put_message(
        Status.FAILED,
        producer_id=producer.public_id,
        url="https://crm.example.com/contacts",
        error="HTTP 500: boom",
    )

    response = console.get(URL)

    assert listed(response) == [newer.id, older.id]
    html = response.content.decode()
    row = html.split(f'data-message-id="{newer.id}"', 1)[1].split("</tr>", 1)[0]
    for expected in [
        newer.id,
        f"billing ({producer.public_id})",
        "crm.example.com",
        "POST",
        'status-FAILED">FAILED',
        "<td>1</td>",
        "HTTP 500: boom",
    ]:
        assert expected in row, expected
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row)
    for header in [
        "Message id",
        "Producer",
        "Target host",
        "Method",
        "Status",
        "Attempts",
        "Last error",
        "Updated (UTC)",
    ]:
        assert f'<th scope="col">{header}</th>' in html


def test_filter_by_status_and_producer(console, put_message):
    billing, _ = make_producer("billing")
    crm, _ = make_producer("crm")
    failed_billing = put_message(Status.FAILED, producer_id=billing.public_id)
    put_message(Status.COMPLETED, producer_id=billing.public_id)
    failed_crm = put_message(Status.FAILED, producer_id=crm.public_id)

    assert listed(console.get(URL, {"status": "FAILED"})) == [failed_crm.id, failed_billing.id]
    assert listed(console.get(URL, {"status": "FAILED", "producer": billing.public_id})) == [
        failed_billing.id
    ]
    html = console.get(URL, {"status": "FAILED"}).content.decode()
    assert '<li class="selected"><a href="?status=FAILED">FAILED</a></li>' in html
    assert f'href="?status=FAILED&amp;producer={crm.public_id}">crm</a>' in html


def test_unknown_filter_values_are_ignored(console, put_message):
    message = put_message(Status.QUEUED)
    assert listed(console.get(URL, {"status": "LOST", "producer": "prd_999"})) == [message.id]


def test_search_by_message_id(console, put_message):
    wanted = put_message(Status.COMPLETED)
    put_message(Status.COMPLETED)
    response = console.get(URL, {"q": wanted.id})
    assert listed(response) == [wanted.id]
    assert "Message(s) named by" in response.content.decode()


def test_search_by_idempotency_key_finds_it_for_any_producer(console, aws):
    from notifications import services

    producer, _ = make_producer("signup")
    submission = services.Submission(
        target_url="https://ads.example.com/conversions",
        method="POST",
        headers={},
        body="{}",
        body_is_json=True,
        idempotency_key="signup-4242",
    )
    message = services.message_submit(producer_id=producer.public_id, submission=submission).message

    assert listed(console.get(URL, {"q": "signup-4242"})) == [message.id]
    assert listed(console.get(URL, {"q": "signup-4242", "status": "FAILED"})) == []


def test_search_by_target_host(console, put_message):
    crm = put_message(Status.FAILED, url="https://CRM.example.com/contacts")
    put_message(Status.FAILED, url="https://ads.example.com/hook")
    assert listed(console.get(URL, {"q": "crm.example.com"})) == [crm.id]
    assert listed(console.get(URL, {"q": "Crm.Example.com", "status": "FAILED"})) == [crm.id]
    assert listed(console.get(URL, {"q": "nothing here!"})) == []


def test_cursor_pagination_older_and_newer(console, put_message, settings):
    from notifications.admin import views

    views.PAGE_SIZE, original = 3, views.PAGE_SIZE
    try:
        expected = [m.id for m in put_series(put_message, 7, status=Status.FAILED)]
        first = console.get(URL, {"status": "FAILED"})
        assert listed(first) == expected[:3]
        html = first.content.decode()
        assert '<span class="disabled">‹ Newer</span>' in html

        older = re.search(r'href="\?([^"]+)" rel="next"', html).group(1).replace("&amp;", "&")
        second = console.get(f"{URL}?{older}")
        assert listed(second) == expected[3:6]
        assert "status=FAILED" in older  # filters survive paging

        html = second.content.decode()
        older = re.search(r'href="\?([^"]+)" rel="next"', html).group(1).replace("&amp;", "&")
        third = console.get(f"{URL}?{older}")
        assert listed(third) == expected[6:]
        assert '<span class="disabled">Older ›</span>' in third.content.decode()

        newer = re.search(r'href="\?([^"]+)" rel="prev"', third.content.decode()).group(1)
        back = console.get(f"{URL}?{newer.replace('&amp;', '&')}")
        assert listed(back) == expected[3:6]
        newer = re.search(r'href="\?([^"]+)" rel="prev"', back.content.decode()).group(1)
        top = console.get(f"{URL}?{newer.replace('&amp;', '&')}")
        assert listed(top) == expected[:3]
        assert '<span class="disabled">‹ Newer</span>' in top.content.decode()
    finally:
        views.PAGE_SIZE = original


def test_a_forged_cursor_is_an_error_message_not_a_500(console, put_message):
    put_message(Status.FAILED)
    response = console.get(URL, {"status": "FAILED", "cursor": "not-a-cursor"}, follow=True)
    assert response.redirect_chain == [(f"{URL}?status=FAILED", 302)]
    assert "The cursor is not one this page gave." in response.content.decode()


def test_empty(console):
    assert "No messages match." in console.get(URL).content.decode()
