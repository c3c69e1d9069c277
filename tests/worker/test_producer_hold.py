"""A deactivated producer's messages wait without spending attempts, with the reason visible,
and go once it is reactivated."""

from __future__ import annotations

from notifications.clock import ManualClock
from notifications.domain import FailureReason, Status
from notifications.queue import default_queue
from notifications.selectors import message_get
from notifications.services import Submission, message_submit
from tests.factories import make_producer
from tests.support.worker import run_until, status_of
from tests.vendor import Answer


def test_messages_of_a_deactivated_producer_wait_and_go_after_reactivation(make_worker, vendor):
    producer, _ = make_producer("paused")
    clock = ManualClock()
    url = vendor.script("/paused", Answer(200))
    submission = Submission(
        target_url=url, method="POST", headers={}, body='{"n": 1}', body_is_json=True
    )
    message_id = message_submit(
        producer_id=producer.public_id, submission=submission, clock=clock
    ).message.id
    producer.is_active = False
    producer.save()

    worker = make_worker(clock=clock)
    assert run_until(worker, lambda: bool(message_get(message_id=message_id)[0].last_error)) == [
        "held"
    ]
    message, attempts = message_get(message_id=message_id)
    assert message.status == Status.QUEUED
    assert "deactivated" in message.last_error
    assert message.last_error_code == FailureReason.PRODUCER_DEACTIVATED
    assert (message.attempt_count, message.budget_attempts, attempts) == (0, 0, [])
    assert vendor.requests_to("/paused") == []

    producer.is_active = True
    producer.save()
    clock.advance(worker.hold_seconds)
    worker.producers.ttl_seconds = 0  # what the cache's TTL does in a worker that keeps running
    default_queue().send(message_id)  # the held message's delayed queue message, without waiting
    run_until(worker, lambda: status_of(message_id) == Status.COMPLETED)
    message, attempts = message_get(message_id=message_id)
    assert message.attempt_count == 1 and len(attempts) == 1
    assert len(vendor.requests_to("/paused")) == 1
