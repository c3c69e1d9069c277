"""The submit service against moto: a worker claiming first is success."""

from dataclasses import replace

import pytest

from notifications.domain import HistoryEntry, Status
from notifications.queue import WorkQueue
from notifications.services import Submission, message_enqueue, message_submit
from notifications.store import default_store
from tests.factories import build_message

pytestmark = pytest.mark.usefixtures("aws")


def test_enqueue_finding_the_message_claimed_is_success():
    store = default_store()
    message = build_message(status=Status.PENDING)
    store.put_new(message)
    entry = HistoryEntry(
        Status.PENDING, Status.PROCESSING, "2026-11-25T10:00:00.000000Z", "worker:w", ""
    )
    store.transition(
        message.id,
        producer_id=message.producer_id,
        expected=Status.PENDING,
        target=Status.PROCESSING,
        entry=entry,
    )

    result = message_enqueue(message=message, actor="tests")

    assert result.status == Status.PROCESSING
    assert store.get(message.id).status == Status.PROCESSING


def test_submit_without_key_creates_distinct_messages():
    submission = Submission(
        target_url="https://vendor.example.com/",
        method="POST",
        headers={},
        body=None,
        body_is_json=False,
    )
    first = message_submit(producer_id="prd_1", submission=submission)
    second = message_submit(producer_id="prd_1", submission=submission)
    assert first.message.id != second.message.id
    assert not first.replayed and not second.replayed
    assert WorkQueue().depth()["visible"] == 2


def test_enqueue_of_a_listed_message_returns_the_message_as_stored():
    """The reconciler enqueues what a listing gave it (what the index projects): the QUEUED
    mark must read the message back, not complete the partial one it was given."""
    store = default_store()
    message = build_message(status=Status.PENDING, metadata={"k": "v"}, idempotency_key="abc")
    store.put_new(message)
    listed = replace(message, metadata={}, idempotency_key=None, budget_started_at="")

    queued = message_enqueue(message=listed, actor="reconciler")

    assert queued.status == Status.QUEUED
    assert (queued.metadata, queued.idempotency_key) == ({"k": "v"}, "abc")
    assert queued.budget_started_at == message.budget_started_at
