"""Deliveries end to end inside one process: moto server, a real local vendor, a real Worker."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest

from notifications import aws
from notifications.clock import ManualClock
from notifications.domain import Status, parse_timestamp
from notifications.queue import QueuedWork, default_queue
from notifications.selectors import message_get
from notifications.services import Submission, message_submit
from notifications.store import default_store
from tests.conftest import free_port
from tests.support.submission import submit
from tests.support.waiting import wait_until
from tests.support.worker import finished, run_until, status_of
from tests.vendor import Answer


def test_2xx_completes_with_exactly_the_submitted_request(make_worker, vendor):
    url = vendor.script("/ok", Answer(201, body=b'{"accepted": true}'))
    message_id = submit(
        url, headers={"X-Api-Key": "vendor-key", "Content-Type": "application/vnd+json"}
    )

    run_until(make_worker(), finished(message_id))

    message, attempts = message_get(message_id=message_id)
    assert message.status == Status.COMPLETED
    assert message.attempt_count == 1
    [call] = vendor.requests_to("/ok")
    assert call.method == "POST"
    assert json.loads(call.body) == {"event": "signup"}
    assert call.headers["X-Api-Key"] == "vendor-key"
    assert call.headers["Content-Type"] == "application/vnd+json"
    assert call.headers["User-Agent"].startswith("Herald/")
    assert call.headers["Herald-Message-Id"] == message_id
    assert [a.status_code for a in attempts] == [201]
    assert attempts[0].response_snippet == '{"accepted": true}'
    assert attempts[0].worker == "test-worker"
    assert default_queue().depth()["visible"] == 0


def test_json_body_gets_json_content_type(make_worker, vendor):
    message_id = submit(vendor.url("/json"))
    run_until(make_worker(), finished(message_id))
    assert vendor.requests_to("/json")[0].headers["Content-Type"] == "application/json"


def test_500_500_200_completes_after_three_attempts_with_the_same_message_id(make_worker, vendor):
    url = vendor.script("/flaky", Answer(500, body=b"down"), Answer(500, body=b"down"), Answer(200))
    message_id = submit(url)

    run_until(make_worker(), finished(message_id))

    message, attempts = message_get(message_id=message_id)
    assert message.status == Status.COMPLETED
    assert [a.status_code for a in attempts] == [500, 500, 200]
    assert [a.number for a in attempts] == [1, 2, 3]
    assert all(a.duration_ms >= 0 for a in attempts)
    calls = vendor.requests_to("/flaky")
    assert len(calls) == 3
    assert {c.headers["Herald-Message-Id"] for c in calls} == {message_id}
    statuses = [(h.from_status, h.to_status) for h in message.history]
    assert statuses.count((Status.PROCESSING, Status.QUEUED)) == 2


def test_410_fails_at_once(make_worker, vendor):
    url = vendor.script("/gone", Answer(410, body=b"no such campaign"))
    message_id = submit(url)

    run_until(make_worker(), finished(message_id))

    message = default_store().get(message_id)
    assert message.status == Status.FAILED
    assert message.last_error == "HTTP 410: no such campaign"
    assert len(vendor.requests_to("/gone")) == 1


def test_3xx_is_not_followed_and_fails(make_worker, vendor):
    url = vendor.script("/moved", Answer(302, headers={"Location": vendor.url("/elsewhere")}))
    message_id = submit(url)

    run_until(make_worker(), finished(message_id))

    assert status_of(message_id) == Status.FAILED
    assert vendor.requests_to("/elsewhere") == []
    _, attempts = message_get(message_id=message_id)
    assert attempts[0].response_headers["location"].endswith("/elsewhere")


def test_429_retry_after_is_honoured(make_worker, vendor):
    url = vendor.script("/limited", Answer(429, headers={"Retry-After": "2"}), Answer(200))
    message_id = submit(url)
    worker = make_worker(delays=(60.0,))

    outcomes = run_until(
        worker, lambda: status_of(message_id) == Status.QUEUED and bool(vendor.received)
    )
    message = default_store().get(message_id)
    wait = parse_timestamp(message.next_attempt_at) - parse_timestamp(message.updated_at)
    assert wait.total_seconds() == pytest.approx(2, abs=0.01)
    assert outcomes == ["queued"]

    run_until(worker, finished(message_id))
    calls = vendor.requests_to("/limited")
    assert len(calls) == 2
    assert calls[1].at - calls[0].at >= 1.9
    assert status_of(message_id) == Status.COMPLETED


def test_timeout_is_retried(make_worker, vendor):
    url = vendor.script("/slow", Answer(200, delay=3))
    message_id = submit(url)
    worker = make_worker(delays=(60.0,), timeout=1.0)

    run_until(worker, lambda: bool(default_store().get(message_id).last_error))

    message, attempts = message_get(message_id=message_id)
    assert message.status == Status.QUEUED
    assert "timed out" in message.last_error.lower() or "timeout" in message.last_error.lower()
    assert attempts[0].status_code is None and attempts[0].outcome == "retry"


def test_connection_refused_is_retried(make_worker):
    message_id = submit(f"http://127.0.0.1:{free_port()}/closed")
    run_until(make_worker(delays=(60.0,)), lambda: bool(default_store().get(message_id).last_error))
    message = default_store().get(message_id)
    assert message.status == Status.QUEUED
    assert "refused" in message.last_error.lower() or "NewConnectionError" in message.last_error


def test_spent_budget_fails_with_the_last_error(make_worker, vendor):
    url = vendor.script("/down", then=Answer(503, body=b"maintenance"))
    message_id = submit(url)

    run_until(make_worker(max_attempts=3), finished(message_id))

    message = default_store().get(message_id)
    assert message.status == Status.FAILED
    assert len(vendor.requests_to("/down")) == 3
    assert message.last_error == "HTTP 503: maintenance"
    assert "retry budget spent after 3 attempt(s)" in message.history[-1].reason


def test_backoff_longer_than_sqs_limit_is_chained_with_an_injected_clock(make_worker, vendor):
    clock = ManualClock()
    url = vendor.script("/later", Answer(500), Answer(200))
    message_id = submit(url, clock=clock)
    worker = make_worker(delays=(3600.0,), clock=clock)
    sent_delays: list[int] = []
    sqs = aws.sqs()
    capture = lambda params, **_: sent_delays.append(params.get("DelaySeconds", 0))  # noqa: E731
    sqs.meta.events.register("provide-client-params.sqs.SendMessage", capture)
    try:
        run_until(worker, lambda: status_of(message_id) == Status.QUEUED and bool(vendor.received))
        message = default_store().get(message_id)
        assert parse_timestamp(message.next_attempt_at) == clock.now() + timedelta(hours=1)
        assert sent_delays == [900]  # the longest delay SQS allows, the rest is chained

        # The delayed copy arrives after 15 minutes (simulated: moto would make us wait 900 s).
        clock.advance(900)
        default_queue().send(message_id)
        assert run_until(worker, lambda: len(sent_delays) == 3) == ["not_due"]
        assert sent_delays[-1] == 900  # 45 minutes left: chained again
        assert len(vendor.requests_to("/later")) == 1  # never delivered before next_attempt_at

        clock.advance(2700)
        default_queue().send(message_id)
        run_until(worker, finished(message_id))
    finally:
        sqs.meta.events.unregister("provide-client-params.sqs.SendMessage", capture)
    assert status_of(message_id) == Status.COMPLETED
    assert len(vendor.requests_to("/later")) == 2


def test_same_queue_message_to_two_workers_at_once_makes_one_call(make_worker, vendor):
    url = vendor.script("/once", Answer(200, delay=1.0))
    message_id = submit(url)
    [work] = default_queue().receive(max_messages=1, wait_seconds=1)
    first, second = make_worker(worker_id="w1"), make_worker(worker_id="w2")
    results: dict[str, str] = {}

    def run(worker):
        results[worker.worker_id] = worker.handle(work)

    threads = [threading.Thread(target=run, args=(w,)) for w in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)

    assert sorted(results.values()) == ["busy", "completed"]
    assert len(vendor.requests_to("/once")) == 1
    assert status_of(message_id) == Status.COMPLETED


def test_poison_messages_go_to_the_dead_letter_queue_and_come_back(make_worker, settings):
    from io import StringIO

    from django.core.management import call_command

    settings.SQS_MAX_RECEIVE_COUNT = 2
    queue = default_queue()
    queue.ensure_queues()
    client = aws.sqs()
    client.send_message(QueueUrl=queue.url, MessageBody="not json")
    client.send_message(QueueUrl=queue.url, MessageBody='{"v":1,"message_id":"msg_unknown"}')
    worker = make_worker()

    def shorten_visibility(work: QueuedWork) -> str:
        outcome = worker.handle(work)
        queue.change_visibility(work.receipt_handle, 0)  # skip the wait; the receive still counts
        return outcome

    outcomes = []

    def both_dead_lettered() -> bool:
        outcomes.extend(
            shorten_visibility(w) for w in queue.receive(max_messages=10, wait_seconds=1)
        )
        return queue.depth()["dead_letters"] == 2

    wait_until(both_dead_lettered, timeout=20, what="two dead letters", interval=0)
    assert queue.depth()["dead_letters"] == 2
    assert sorted(set(outcomes)) == ["missing", "undecodable"]
    assert queue.depth()["visible"] == 0

    out = StringIO()
    call_command("redrive_dlq", stdout=out)
    assert "moved 2 dead letter(s)" in out.getvalue()
    assert "msg_unknown" in out.getvalue()
    assert queue.depth()["dead_letters"] == 0
    assert queue.depth()["visible"] == 2


def test_attempts_api_lists_the_log(make_worker, vendor, db):
    from rest_framework.test import APIClient

    from tests.factories import make_producer

    producer, key = make_producer("attempts")
    url = vendor.script("/log", Answer(500, body=b"x" * 5000), Answer(200))
    submission = Submission(target_url=url, method="PUT", headers={}, body="a", body_is_json=False)
    message_id = message_submit(producer_id=producer.public_id, submission=submission).message.id
    run_until(make_worker(), finished(message_id))

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    data = client.get(f"/api/v1/messages/{message_id}/attempts").json()["results"]
    assert [a["status_code"] for a in data] == [500, 200]
    assert len(data[0]["response_snippet"]) == 1024
    assert data[0]["outcome"] == "retry" and data[1]["outcome"] == "delivered"
    detail = client.get(f"/api/v1/messages/{message_id}").json()
    assert detail["attempt_count"] == 2 and detail["status"] == "COMPLETED"


def test_an_aws_fault_during_the_claim_keeps_the_message_and_frees_the_slot(make_worker, vendor):
    from notifications.aws import AWSUnavailable
    from tests.conftest import FaultInjector

    message_id = submit(vendor.url("/after-fault"))
    worker = make_worker()
    [work] = default_queue().receive(max_messages=1, wait_seconds=1)
    faults = FaultInjector()
    faults.fail("dynamodb", "UpdateItem", status=500, code="InternalServerError")
    try:
        with pytest.raises(AWSUnavailable):
            worker.handle(work)
    finally:
        faults.clear()
    assert worker.admission.in_flight("127.0.0.1") == 0
    assert status_of(message_id) == Status.QUEUED
    default_queue().change_visibility(work.receipt_handle, 0)  # as if its visibility ran out
    run_until(worker, finished(message_id))
    assert status_of(message_id) == Status.COMPLETED
