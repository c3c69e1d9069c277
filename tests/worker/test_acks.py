"""Batched acknowledgements (`worker.acks`): deletes and visibility changes ten to a request,
a partial batch after the flush interval, failures retried or dropped, everything flushed on stop.

Calls are counted with botocore events on Herald's own SQS client, against the session's moto
server; faults go through botocore's real retry path (see tests/conftest.py)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from notifications.aws import sqs
from notifications.domain import Status
from notifications.queue import WorkQueue, default_queue
from notifications.worker.acks import MAX_TRIES, Acknowledgements
from tests.support.submission import submit
from tests.support.waiting import wait_until
from tests.support.worker import run_until, running, status_of
from tests.vendor import Answer


def queued(count: int) -> list[str]:
    """Put `count` queue messages on the work queue, receive them all; their receipt handles."""
    queue = default_queue()
    for n in range(count):
        queue.send(f"msg_{n}")
    handles: list[str] = []

    def received_all() -> bool:
        batch = queue.receive(max_messages=10, wait_seconds=1, visibility_timeout=60)
        handles.extend(work.receipt_handle for work in batch)
        return len(handles) == count

    wait_until(received_all, timeout=20, what=lambda: f"{count} received, got {len(handles)}")
    return handles


def left_in_queue() -> int:
    depth = default_queue().depth()
    return depth["visible"] + depth["in_flight"] + depth["delayed"]


class Requests:
    """The entries of each request of one SQS operation, as sent, with when it was sent."""

    def __init__(self, operation: str) -> None:
        self.entries: list[list[str]] = []
        self.times: list[float] = []
        self._event = f"provide-client-params.sqs.{operation}"
        sqs().meta.events.register(self._event, self._seen)

    def _seen(self, params: dict[str, Any], **_: Any) -> None:
        self.entries.append([entry["ReceiptHandle"] for entry in params["Entries"]])
        self.times.append(time.monotonic())

    def stop(self) -> None:
        sqs().meta.events.unregister(self._event, self._seen)


@pytest.fixture
def requests_of(aws: str) -> Iterator[Callable[[str], Requests]]:
    started: list[Requests] = []

    def start(operation: str) -> Requests:
        started.append(Requests(operation))
        return started[-1]

    yield start
    for requests in started:
        requests.stop()


def test_25_deletes_take_3_delete_message_batch_requests(faults):
    handles = queued(25)
    batches = faults.count("sqs", "DeleteMessageBatch")
    singles = faults.count("sqs", "DeleteMessage")
    acks = Acknowledgements(default_queue(), flush_seconds=3600)  # only full batches, then close

    for handle in handles:
        acks.delete(handle)
    assert batches() == 2  # each full batch at once, on the thread that filled it
    assert acks.pending == 5
    assert left_in_queue() == 5

    acks.close()
    assert batches() == 3 and singles() == 0
    assert acks.pending == 0
    assert left_in_queue() == 0


def test_a_lone_delete_goes_out_after_the_flush_interval(aws, requests_of):
    [handle] = queued(1)
    deletes = requests_of("DeleteMessageBatch")
    acks = Acknowledgements(default_queue(), flush_seconds=0.2)

    added = time.monotonic()
    acks.delete(handle)
    wait_until(lambda: deletes.entries, timeout=5, what="the delete to be sent")

    assert deletes.entries == [[handle]]
    waited = deletes.times[0] - added
    assert 0.2 <= waited < 1.5  # held for the interval (for company), then sent by itself
    wait_until(lambda: left_in_queue() == 0, timeout=5, what="the queue message to be gone")


def test_visibility_changes_are_batched_too(aws, faults):
    handles = queued(3)
    batches = faults.count("sqs", "ChangeMessageVisibilityBatch")
    singles = faults.count("sqs", "ChangeMessageVisibility")
    acks = Acknowledgements(default_queue(), flush_seconds=0.2)

    for handle in handles:
        acks.change_visibility(handle, 0)  # hand them back

    wait_until(lambda: default_queue().depth()["visible"] == 3, timeout=5, what="3 visible")
    assert batches() == 1 and singles() == 0


def test_entries_that_failed_on_sqss_side_are_sent_again_and_only_they(aws, requests_of):
    handles = queued(4)
    deletes = requests_of("DeleteMessageBatch")
    client = sqs()
    event = "after-call.sqs.DeleteMessageBatch"

    def fail_two_the_first_time(parsed: dict[str, Any], **_: Any) -> None:
        if len(deletes.entries) == 1:  # SQS answers entries 1 and 3 with a server-side fault
            parsed["Successful"] = [s for s in parsed["Successful"] if s["Id"] not in ("1", "3")]
            parsed["Failed"] = [
                {"Id": n, "SenderFault": False, "Code": "InternalError", "Message": "injected"}
                for n in ("1", "3")
            ]

    client.meta.events.register(event, fail_two_the_first_time)
    try:
        acks = Acknowledgements(default_queue(), flush_seconds=3600)
        for handle in handles:
            acks.delete(handle)
        acks.flush()
    finally:
        client.meta.events.unregister(event, fail_two_the_first_time)

    assert deletes.entries == [handles, [handles[1], handles[3]]]
    assert acks.pending == 0
    assert left_in_queue() == 0


def test_a_request_that_fails_as_a_whole_is_sent_again(faults, settings):
    handles = queued(3)
    requests = faults.count("sqs", "DeleteMessageBatch")  # after botocore's retries
    faults.fail("sqs", "DeleteMessageBatch", times=settings.AWS_MAX_ATTEMPTS)  # one whole try
    acks = Acknowledgements(default_queue(), flush_seconds=3600)

    for handle in handles:
        acks.delete(handle)  # never raises
    acks.flush()

    assert requests() == 2  # the one that failed, and the one that got through
    assert faults.calls["sqs.DeleteMessageBatch"] == settings.AWS_MAX_ATTEMPTS + 1  # attempts
    assert left_in_queue() == 0


def test_invalid_receipt_handles_are_dropped_without_holding_up_the_others(aws, caplog):
    handles = queued(3)
    deletes = Requests("DeleteMessageBatch")
    acks = Acknowledgements(default_queue(), flush_seconds=3600)
    try:
        with caplog.at_level(logging.WARNING, logger="notifications.worker.acks"):
            acks.delete(handles[0])
            acks.delete("not-a-receipt-handle")  # gone, or expired: SQS refuses the entry
            acks.delete(handles[1])
            acks.change_visibility("not-a-receipt-handle-either", 0)
            acks.delete(handles[2])
            acks.close()
    finally:
        deletes.stop()

    assert deletes.entries == [[handles[0], "not-a-receipt-handle", handles[1], handles[2]]]
    assert left_in_queue() == 0
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 2 and all("ReceiptHandleIsInvalid" in m for m in refused)


def test_a_delete_that_keeps_failing_is_dropped_and_the_redelivery_is_harmless(
    make_worker, vendor, faults, caplog
):
    url = vendor.script("/once", Answer(200))
    message_id = submit(url)
    worker = make_worker()
    [work] = default_queue().receive(max_messages=1, wait_seconds=1)
    # Refused outright (no botocore retries): say the role lost sqs:DeleteMessage.
    faults.fail("sqs", "DeleteMessageBatch", status=403, code="AccessDenied")
    with caplog.at_level(logging.WARNING, logger="notifications.worker.acks"):
        assert worker.handle(work) == "completed"
        worker.acks.flush()
    faults.clear()

    assert faults.calls["sqs.DeleteMessageBatch"] == MAX_TRIES
    assert any(f"after {MAX_TRIES} tries" in r.getMessage() for r in caplog.records)
    assert status_of(message_id) == Status.COMPLETED
    assert left_in_queue() == 1  # not lost: SQS has it still
    default_queue().change_visibility_batch([(work.receipt_handle, 0)])  # its timeout ran out

    outcomes = run_until(worker, lambda: left_in_queue() == 0)

    assert outcomes == ["duplicate"]  # the status guard: no second call
    assert len(vendor.requests_to("/once")) == 1


def test_stopping_the_worker_flushes_what_is_pending(make_worker, vendor, faults):
    ids = [submit(vendor.url(f"/stop-{n}")) for n in range(3)]
    batches = faults.count("sqs", "DeleteMessageBatch")
    worker = make_worker(ack_flush_seconds=3600)  # nothing goes out before the stop

    with running(worker) as thread:
        wait_until(
            lambda: all(status_of(i) == Status.COMPLETED for i in ids),
            timeout=30,
            what="three deliveries",
        )
        wait_until(lambda: worker.acks.pending == 3, timeout=5, what="three pending deletes")
        assert batches() == 0
        assert default_queue().depth()["in_flight"] == 3
    assert not thread.is_alive()

    assert batches() == 1
    assert worker.acks.pending == 0
    assert left_in_queue() == 0


def test_a_worker_delivers_each_message_once_and_leaves_the_queue_empty(
    make_worker, vendor, faults, requests_of
):
    ids = [submit(vendor.url(f"/run-{n}")) for n in range(25)]
    deletes = requests_of("DeleteMessageBatch")
    singles = faults.count("sqs", "DeleteMessage")
    worker = make_worker(concurrency=16)

    with running(worker):
        wait_until(
            lambda: all(status_of(i) == Status.COMPLETED for i in ids),
            timeout=60,
            what="25 deliveries",
        )

    assert [len(vendor.requests_to(f"/run-{n}")) for n in range(25)] == [1] * 25
    deleted = [handle for request in deletes.entries for handle in request]
    assert len(deleted) == len(set(deleted)) == 25  # each queue message deleted once
    assert all(len(request) <= 10 for request in deletes.entries)
    assert len(deletes.entries) < 25 and singles() == 0
    assert left_in_queue() == 0


def test_a_queue_given_more_than_ten_sends_several_requests(aws, faults):
    handles = queued(12)
    batches = faults.count("sqs", "ChangeMessageVisibilityBatch")

    failures = WorkQueue().change_visibility_batch([(h, 0) for h in handles])

    assert failures == [] and batches() == 2
    wait_until(lambda: default_queue().depth()["visible"] == 12, timeout=5, what="12 visible")
