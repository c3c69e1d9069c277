"""Requests the wire cannot carry (stored before validation refused them, or through a path that
skips the API): the real worker records a permanent attempt with a clear error, and never lets the
exception escape to leave the message PROCESSING. Internationalised host names are looked up and
sent as their ASCII form."""

from __future__ import annotations

import pytest

from notifications.delivery.http import outgoing_headers
from notifications.domain import DeliveryRequest, FailureReason, Status
from notifications.selectors import message_get
from tests.support.submission import submit
from tests.support.worker import finished, run_until, status_of
from tests.vendor import Answer


@pytest.mark.parametrize(
    "headers,complaint",
    [
        ({"X-Price": "10 €"}, "UnicodeEncodeError"),
        ({"X-Campaign\n": "autumn"}, "ValueError"),
        ({"Authorization": "Bearer s3cr3t\nX-Injected: yes"}, "ValueError: Invalid header value"),
    ],
)
def test_a_header_the_wire_cannot_carry_is_a_recorded_permanent_failure(
    make_worker, vendor, headers, complaint
):
    message_id = submit(vendor.url("/unsendable"), headers=headers)

    outcomes = run_until(make_worker(delays=(60.0,)), finished(message_id))

    assert outcomes == ["failed"]
    message, attempts = message_get(message_id=message_id)
    assert message.status == Status.FAILED
    assert message.last_error.startswith(f"RequestNotSendable: {complaint}")
    assert "s3cr3t" not in message.last_error
    assert message.last_error_code == FailureReason.REQUEST_NOT_SENDABLE
    assert [(a.number, a.outcome, a.error_code) for a in attempts] == [
        (1, "permanent", FailureReason.REQUEST_NOT_SENDABLE)
    ]
    assert message.lease_token is None
    assert vendor.requests_to("/unsendable") == []


def test_an_internationalised_host_is_looked_up_and_sent_in_its_ascii_form(make_worker, vendor):
    port = vendor.server.server_address[1]
    vendor.script("/idna", Answer(204))
    message_id = submit(f"http://bücher.example:{port}/idna")
    worker = make_worker()
    asked = []
    worker.client.resolver = lambda host, port_: asked.append(host) or ["127.0.0.1"]

    run_until(worker, finished(message_id))

    assert status_of(message_id) == Status.COMPLETED
    assert asked == ["xn--bcher-kva.example"]
    [call] = vendor.requests_to("/idna")
    assert call.headers["Host"] == f"xn--bcher-kva.example:{port}"


def test_a_retry_after_of_non_ascii_digits_is_ignored_not_fatal(make_worker, vendor):
    url = vendor.script("/busy", Answer(503, headers={"Retry-After": "²"}), Answer(200))
    message_id = submit(url)

    outcomes = run_until(make_worker(delays=(0.0,)), finished(message_id))

    assert outcomes == ["queued", "completed"]
    assert status_of(message_id) == Status.COMPLETED


def test_a_stored_herald_message_id_header_is_not_sent_twice():
    request = DeliveryRequest(
        url="https://vendor.example.com/",
        method="POST",
        headers={"herald-message-id": "producer-chosen", "X-Campaign": "autumn"},
        body=None,
        body_is_json=False,
    )
    headers = outgoing_headers(request, "msg_1")
    assert [name for name in headers if name.lower() == "herald-message-id"] == [
        "Herald-Message-Id"
    ]
    assert headers["Herald-Message-Id"] == "msg_1"
