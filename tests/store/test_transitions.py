"""Every allowed and every forbidden transition, against moto."""

import itertools

import pytest

from notifications.domain import (
    TRANSITIONS,
    FailureReason,
    HistoryEntry,
    IllegalTransition,
    Status,
    TransitionConflict,
)
from notifications.store import default_store
from tests.factories import build_message

pytestmark = pytest.mark.usefixtures("aws")


def entry(source, target, actor="tests"):
    return HistoryEntry(source, target, "2026-11-25T10:00:00.000000Z", actor, "because")


@pytest.mark.parametrize("pair", sorted(TRANSITIONS))
def test_allowed_transition_is_applied_with_history(pair):
    source, target = pair
    store = default_store()
    message = build_message(status=source)
    store.put_new(message)

    updated = store.transition(
        message.id,
        producer_id=message.producer_id,
        expected=source,
        target=target,
        entry=entry(source, target, "worker:w1"),
    )

    assert updated.status == target
    stored = store.get(message.id)
    assert stored.status == target
    assert stored.history[-1].as_dict() == {
        "from": source.value,
        "to": target.value,
        "at": "2026-11-25T10:00:00.000000Z",
        "actor": "worker:w1",
        "reason": "because",
    }
    assert len(stored.history) == 2
    listed, _ = store.list_messages(status=target, limit=10)
    assert [m.id for m in listed] == [message.id]


FORBIDDEN = sorted(set(itertools.product(Status, Status)) - set(TRANSITIONS))


@pytest.mark.parametrize("pair", FORBIDDEN)
def test_forbidden_transition_is_refused_and_nothing_changes(pair):
    source, target = pair
    store = default_store()
    message = build_message(status=source)
    store.put_new(message)

    with pytest.raises(IllegalTransition):
        store.transition(
            message.id,
            producer_id=message.producer_id,
            expected=source,
            target=target,
            entry=entry(source, target),
        )

    stored = store.get(message.id)
    assert stored.status == source
    assert len(stored.history) == 1


def test_wrong_expected_status_is_a_conflict_carrying_the_current_item():
    store = default_store()
    message = build_message(status=Status.COMPLETED)
    store.put_new(message)

    with pytest.raises(TransitionConflict) as conflict:
        store.transition(
            message.id,
            producer_id=message.producer_id,
            expected=Status.FAILED,
            target=Status.QUEUED,
            entry=entry(Status.FAILED, Status.QUEUED),
        )

    assert conflict.value.current is not None
    assert conflict.value.current.status == Status.COMPLETED
    assert store.get(message.id).status == Status.COMPLETED


def test_missing_message_is_a_conflict_without_item():
    with pytest.raises(TransitionConflict) as conflict:
        default_store().transition(
            "msg_missing",
            producer_id="prd_1",
            expected=Status.PENDING,
            target=Status.QUEUED,
            entry=entry(Status.PENDING, Status.QUEUED),
        )
    assert conflict.value.current is None


def test_lease_token_guards_the_final_transition():
    store = default_store()
    message = build_message(
        status=Status.PROCESSING,
        lease_token="new-owner",
        lease_expires_at="2026-11-25T10:05:00.000000Z",
    )
    store.put_new(message)

    with pytest.raises(TransitionConflict):
        store.transition(
            message.id,
            producer_id=message.producer_id,
            expected=Status.PROCESSING,
            target=Status.COMPLETED,
            entry=entry(Status.PROCESSING, Status.COMPLETED),
            lease_token="stale-owner",
        )
    done = store.transition(
        message.id,
        producer_id=message.producer_id,
        expected=Status.PROCESSING,
        target=Status.COMPLETED,
        entry=entry(Status.PROCESSING, Status.COMPLETED),
        lease_token="new-owner",
        changes={"lease_token": None, "lease_expires_at": None},
    )
    assert done.status == Status.COMPLETED
    assert done.lease_token is None


def test_reclaim_requires_an_expired_lease():
    store = default_store()
    message = build_message(
        status=Status.PROCESSING, lease_token="a", lease_expires_at="2026-11-25T10:05:00.000000Z"
    )
    store.put_new(message)
    with pytest.raises(TransitionConflict):
        store.transition(
            message.id,
            producer_id=message.producer_id,
            expected=Status.PROCESSING,
            target=Status.PROCESSING,
            entry=entry(Status.PROCESSING, Status.PROCESSING),
            lease_expired_before="2026-11-25T10:04:59.000000Z",
            changes={"lease_token": "b"},
        )
    reclaimed = store.transition(
        message.id,
        producer_id=message.producer_id,
        expected=Status.PROCESSING,
        target=Status.PROCESSING,
        entry=entry(Status.PROCESSING, Status.PROCESSING),
        lease_expired_before="2026-11-25T10:05:01.000000Z",
        changes={"lease_token": "b"},
    )
    assert reclaimed.lease_token == "b"


def test_status_cannot_be_written_through_changes():
    store = default_store()
    message = build_message(status=Status.PENDING)
    store.put_new(message)
    with pytest.raises(ValueError, match="cannot change"):
        store.transition(
            message.id,
            producer_id=message.producer_id,
            expected=Status.PENDING,
            target=Status.QUEUED,
            entry=entry(Status.PENDING, Status.QUEUED),
            changes={"status": "COMPLETED"},
        )
    assert store.get(message.id).status == Status.PENDING


def test_a_write_given_the_message_it_finds_returns_what_a_fresh_read_says():
    """`known`: DynamoDB returns only what the write set (UPDATED_NEW), applied to the message
    the caller holds; the result must be the message as stored, field for field."""
    store = default_store()
    message = build_message(status=Status.PENDING)  # a small request: stored inline
    store.put_new(message)
    held = store.get(message.id)
    queued = store.transition(
        message.id,
        producer_id=message.producer_id,
        expected=Status.PENDING,
        target=Status.QUEUED,
        entry=entry(Status.PENDING, Status.QUEUED),
        changes={"next_attempt_at": "2026-11-25T10:01:00.000000Z"},
        known=held,
    )
    assert queued == store.get(message.id)

    claimed = store.transition(
        message.id,
        producer_id=message.producer_id,
        expected=Status.QUEUED,
        target=Status.PROCESSING,
        entry=entry(Status.QUEUED, Status.PROCESSING),
        changes={"lease_token": "mine", "lease_expires_at": "2026-11-25T10:05:00.000000Z"},
        increments={"attempt_count": 1, "budget_attempts": 1},
    )
    failed = store.transition(
        message.id,
        producer_id=message.producer_id,
        expected=Status.PROCESSING,
        target=Status.FAILED,
        entry=entry(Status.PROCESSING, Status.FAILED),
        changes={
            "lease_token": None,
            "lease_expires_at": None,
            "next_attempt_at": None,
            "last_error": "HTTP 410",
            "last_error_code": FailureReason.HTTP_STATUS,
            "budget_started_at": "2026-11-25T10:02:00.000000Z",
        },
        increments={"budget_attempts": 1},
        lease_token="mine",
        known=claimed,
    )
    stored = store.get(message.id)
    assert failed == stored
    assert (failed.lease_token, failed.next_attempt_at, failed.last_error) == (
        None,
        None,
        "HTTP 410",
    )
    assert failed.last_error_code == FailureReason.HTTP_STATUS
    assert (failed.budget_attempts, failed.budget_started_at) == (2, "2026-11-25T10:02:00.000000Z")
    assert failed.expires_at is not None and failed.attempt_count == 1
