"""Messages held back by admission wait inside the worker: no AWS calls, no receive count."""

from __future__ import annotations

import time
from datetime import timedelta

from notifications.clock import system_clock
from notifications.delivery.admission import Admission
from notifications.domain import Status, format_timestamp
from notifications.queue import default_queue
from notifications.services import messages_reconcile
from notifications.store import default_store
from notifications.worker import Worker
from tests.factories import build_message
from tests.support.submission import submit
from tests.support.waiting import wait_until
from tests.support.worker import running, status_of
from tests.vendor import Answer


def run_until_completed(worker: Worker, ids: list[str], timeout: float) -> int:
    """Run the worker until every message is COMPLETED; returns the longest waiting line seen."""
    most_waiting = 0

    def all_completed() -> bool:
        nonlocal most_waiting
        most_waiting = max(most_waiting, worker.waiting)
        return all(status_of(i) == Status.COMPLETED for i in ids)

    with running(worker):
        wait_until(
            all_completed,
            timeout=timeout,
            what=lambda: f"every message COMPLETED: {[status_of(i) for i in ids]}",
            interval=0.05,
        )
    return most_waiting


def test_messages_for_a_busy_host_wait_in_line_without_aws_calls(make_worker, vendor, faults):
    url = vendor.script("/one-at-a-time", then=Answer(200, delay=0.5))
    ids = [submit(url) for _ in range(4)]
    sends = faults.count("sqs", "SendMessage")
    worker = make_worker(concurrency=4)
    worker.admission = Admission(max_per_host=1, max_retries=4)
    most_waiting = run_until_completed(worker, ids, timeout=20)

    assert most_waiting >= 2  # the others waited in the worker while one call ran
    calls = vendor.requests_to("/one-at-a-time")
    assert len(calls) == 4
    # One at a time: each call started after the previous one had been answered (0.5 s each).
    gaps = [later.at - earlier.at for earlier, later in zip(calls, calls[1:], strict=False)]
    assert min(gaps) >= 0.45, gaps
    # Waiting sent nothing to SQS: no deferral re-sent a queue message.
    assert sends() == 0
    for message_id in ids:
        message = default_store().get(message_id)
        assert message.attempt_count == 1  # claimed once, when its turn came
    assert default_queue().depth()["visible"] == 0


def test_a_full_line_defers_through_sqs_and_nothing_is_lost(make_worker, vendor, faults):
    url = vendor.script("/full-line", then=Answer(200, delay=0.3))
    ids = [submit(url) for _ in range(6)]
    sends = faults.count("sqs", "SendMessage")
    worker = make_worker(concurrency=6, max_waiting=1)
    worker.admission = Admission(max_per_host=1, max_retries=6)
    most_waiting = run_until_completed(worker, ids, timeout=40)

    assert most_waiting == 1  # the line held one at a time ...
    assert sends() >= 1  # ... and the rest went round through SQS
    assert len(vendor.requests_to("/full-line")) == 6
    assert default_queue().depth()["dead_letters"] == 0


def test_a_stopping_worker_hands_waiting_messages_back_as_fresh_queue_messages(make_worker, vendor):
    url = vendor.script("/slow-to-stop", then=Answer(200, delay=3.0))
    ids = [submit(url) for _ in range(3)]
    worker = make_worker(concurrency=3, timeout=8.0)
    worker.admission = Admission(max_per_host=1, max_retries=3)
    with running(worker) as runner:
        wait_until(lambda: worker.waiting == 2, timeout=20, what="two waiting", interval=0.05)
    assert not runner.is_alive()
    assert worker.waiting == 0

    done = [i for i in ids if status_of(i) == Status.COMPLETED]
    handed_back = [i for i in ids if i not in done]
    assert len(done) == 1  # the call in flight finished during the drain
    assert all(status_of(i) == Status.QUEUED for i in handed_back)
    received = default_queue().receive(max_messages=10, wait_seconds=1)
    assert sorted(w.message_id for w in received) == sorted(handed_back)
    # New queue messages: the wait did not spend the receive count meant for poison messages.
    assert all(w.receive_count == 1 for w in received)


def test_a_long_waiter_is_not_taken_for_lost_by_the_reconciler(make_worker, vendor):
    url = vendor.script("/long-wait", then=Answer(200, delay=5.0))
    first, second = submit(url), submit(url)
    worker = make_worker(concurrency=2, timeout=8.0)
    worker.admission = Admission(max_per_host=1, max_retries=2)
    worker.visibility_timeout = 3  # heartbeat every second; the wait outlasts the visibility
    worker.waiting_refresh_seconds = 1.0
    most_waiting = 0

    def one_running_one_waiting() -> bool:
        statuses = {status_of(first), status_of(second)}
        return worker.waiting == 1 and statuses == {Status.PROCESSING, Status.QUEUED}

    with running(worker):
        wait_until(
            one_running_one_waiting, timeout=20, what="one running, one waiting", interval=0.05
        )
        waiter = first if status_of(first) == Status.QUEUED else second
        queued_at = default_store().get(waiter).next_attempt_at
        deadline = time.monotonic() + 3.5
        while time.monotonic() < deadline:
            most_waiting = max(most_waiting, worker.waiting)
            time.sleep(0.05)
        refreshed_at = default_store().get(waiter).next_attempt_at
        counts = messages_reconcile(older_than=2.5)
        wait_until(
            lambda: all(status_of(i) == Status.COMPLETED for i in (first, second)),
            timeout=20,
            what="both COMPLETED",
            interval=0.05,
        )

    assert refreshed_at > queued_at  # the heartbeat moved it along while it waited
    assert counts["overdue_queued_found"] == 0
    # Its visibility was extended: had its queue message come back, the copy would have queued
    # up behind it in the line.
    assert most_waiting == 1
    assert len(vendor.requests_to("/long-wait")) == 2  # no second copy was delivered


def test_a_retry_held_on_its_hint_before_it_is_due_keeps_its_backoff(make_worker, vendor):
    # SQS delays stop at 15 minutes, so a long backoff's queue message arrives early. If its host
    # is busy then, it waits in line on the queue message's hint, unread; when the heartbeat
    # reads it, it must go back to waiting for its time, not be moved to now.
    busy_url = vendor.script("/busy", then=Answer(200, delay=4.0))
    busy = submit(busy_url)
    later = format_timestamp(system_clock.now() + timedelta(hours=1))
    early = build_message(
        status=Status.QUEUED, url=vendor.url("/early"), next_attempt_at=later, attempt_count=3
    )
    default_store().put_new(early)
    worker = make_worker(concurrency=2, timeout=8.0)
    worker.admission = Admission(max_per_host=1, max_retries=2)
    worker.visibility_timeout = 3  # heartbeat every second
    worker.waiting_refresh_seconds = 1.0
    with running(worker):
        wait_until(
            lambda: status_of(busy) == Status.PROCESSING,
            timeout=20,
            what="the busy host's call",
            interval=0.05,
        )
        default_queue().send_for(early)
        wait_until(lambda: worker.waiting == 1, timeout=20, what="one waiting", interval=0.05)
        # Read, found not due, sent back.
        wait_until(lambda: worker.waiting == 0, timeout=10, what="none waiting", interval=0.05)
        wait_until(
            lambda: status_of(busy) == Status.COMPLETED,
            timeout=20,
            what="the busy host's call to complete",
            interval=0.05,
        )

    stored = default_store().get(early.id)
    assert stored.status == Status.QUEUED
    assert stored.next_attempt_at == later  # its backoff stands
    assert stored.attempt_count == 3  # never claimed
    assert vendor.requests_to("/early") == []
    assert default_queue().depth()["delayed"] == 1  # waiting in SQS for its time
