"""Each failed attempt is stored with the stable code producers are told (the detail stays in
`error` / `last_error` for operators)."""

from __future__ import annotations

from notifications.domain import FailureReason, Status
from notifications.selectors import message_get
from notifications.store import default_store
from tests.conftest import free_port
from tests.support.submission import submit
from tests.support.worker import run_until
from tests.vendor import Answer


def first_attempt(make_worker, url: str, **worker_options):
    message_id = submit(url)
    run_until(
        make_worker(delays=(60.0,), **worker_options),
        lambda: (
            default_store().get(message_id).attempt_count == 1
            and default_store().get(message_id).lease_token is None
        ),
    )
    return message_get(message_id=message_id)


def test_an_error_status_is_http_status(make_worker, vendor):
    message, [attempt] = first_attempt(make_worker, vendor.script("/down", Answer(503)))
    assert message.status == Status.QUEUED
    assert message.last_error_code == attempt.error_code == FailureReason.HTTP_STATUS
    assert attempt.status_code == 503


def test_a_refused_connection_is_connection_failed(make_worker):
    message, [attempt] = first_attempt(make_worker, f"http://127.0.0.1:{free_port()}/closed")
    assert message.last_error_code == attempt.error_code == FailureReason.CONNECTION_FAILED


def test_no_answer_in_time_is_timeout(make_worker, vendor):
    url = vendor.script("/slow", Answer(200, delay=3))
    message, [attempt] = first_attempt(make_worker, url, timeout=1.0)
    assert message.last_error_code == attempt.error_code == FailureReason.TIMEOUT
    assert message.last_error.startswith("DeliveryTimeout")


def test_a_delivery_has_no_code(make_worker, vendor):
    message, [attempt] = first_attempt(make_worker, vendor.url("/ok"))
    assert message.status == Status.COMPLETED
    assert message.last_error_code is None and attempt.error_code is None
