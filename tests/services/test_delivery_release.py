"""The write that ends a claim gets through AWS faults while the lease lasts: an outcome not
stored would make a message whose vendor was called look unfinished, and it would be called
again once the lease expired."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests
from botocore.awsrequest import AWSResponse
from botocore.exceptions import EndpointConnectionError
from django.conf import settings

from notifications import aws
from notifications.clock import ManualClock
from notifications.delivery.backoff import RetrySchedule
from notifications.delivery.http import HttpResult
from notifications.delivery.policy import OutcomePolicy, parse_status_set
from notifications.domain import Status, format_timestamp
from notifications.services import ClaimState, delivery_claim, delivery_record
from notifications.services.delivery import RELEASE_RETRY_PAUSES
from notifications.store import default_store
from tests.factories import build_message

pytestmark = pytest.mark.usefixtures("aws")

POLICY = OutcomePolicy(parse_status_set(settings.DELIVERY_RETRYABLE_STATUSES))
SCHEDULE = RetrySchedule(delays=(5.0,), max_attempts=5, max_age_seconds=86400, jitter=0.0)


def claimed_message(clock: ManualClock, lease_seconds: float = 60):
    message = build_message(status=Status.QUEUED, created_at=format_timestamp(clock.now()))
    default_store().put_new(message)
    claim = delivery_claim(
        message_id=message.id, worker_id="w", lease_seconds=lease_seconds, clock=clock
    )
    assert claim.state == ClaimState.CLAIMED
    return claim.message


def record(claimed, clock: ManualClock, pauses: list[float]):
    def pause(seconds: float) -> None:
        pauses.append(seconds)
        clock.advance(seconds)

    return delivery_record(
        claimed=claimed,
        result=HttpResult(200, 5),
        started_at=clock.now(),
        worker_id="w",
        policy=POLICY,
        schedule=SCHEDULE,
        clock=clock,
        pause=pause,
    )


@contextmanager
def failing_writes(message_id: str, fault: Callable[[Any], AWSResponse | None]) -> Iterator[None]:
    """`fault(request)` answers the UpdateItems of `message_id` (None: let it through); other
    writes (the dashboard's counts, written behind on another thread) are left alone."""
    client = aws.client("dynamodb")
    event = f"before-send.{client.meta.service_model.service_id.hyphenize()}.UpdateItem"

    def handler(request: Any, **_: Any) -> AWSResponse | None:
        return fault(request) if message_id.encode() in (request.body or b"") else None

    client.meta.events.register(event, handler)
    try:
        yield
    finally:
        client.meta.events.unregister(event, handler)


def error(request: Any, status: int, code: str) -> AWSResponse:
    body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}"}).encode()
    return AWSResponse(request.url, status, {}, _Raw(body))


def test_the_outcome_is_stored_through_an_aws_outage():
    clock = ManualClock()
    claimed = claimed_message(clock)
    sent: list[int] = []

    def refused(request: Any) -> None:
        # Every attempt botocore makes in the first two tries fails to connect.
        sent.append(1)
        if len(sent) <= 2 * settings.AWS_MAX_ATTEMPTS:
            raise EndpointConnectionError(endpoint_url=request.url)

    pauses: list[float] = []
    with failing_writes(claimed.id, refused):
        outcome = record(claimed, clock, pauses)

    assert outcome.message is not None and outcome.message.status == Status.COMPLETED
    assert pauses == list(RELEASE_RETRY_PAUSES[:2])
    stored, attempts = default_store().get_full(claimed.id)
    assert stored.status == Status.COMPLETED
    assert len(attempts) == 1  # stored once, whatever the tries


def test_a_write_carried_out_whose_answer_was_lost_counts_as_stored():
    clock = ManualClock()
    claimed = claimed_message(clock)
    lost: list[int] = []

    def commit_then_lose_the_answer(request: Any) -> AWSResponse | None:
        if lost:
            return None
        # The write reaches DynamoDB and is carried out; the answer never comes back.
        requests.post(request.url, data=request.body, headers=dict(request.headers), timeout=10)
        lost.append(1)
        return error(request, 500, "InternalServerError")

    with failing_writes(claimed.id, commit_then_lose_the_answer):
        outcome = record(claimed, clock, [])

    # botocore's own retry met the condition its first try had already satisfied.
    assert lost and outcome.message is not None
    assert outcome.message.status == Status.COMPLETED
    assert len(default_store().get_full(claimed.id)[1]) == 1


def test_the_tries_end_with_the_lease():
    clock = ManualClock()
    claimed = claimed_message(clock, lease_seconds=2)
    pauses: list[float] = []

    # A fault botocore does not retry itself, so that the test does not wait for it.
    with (
        failing_writes(claimed.id, lambda request: error(request, 400, "AccessDeniedException")),
        pytest.raises(aws.AWSUnavailable),
    ):
        record(claimed, clock, pauses)

    assert sum(pauses) < 2  # never past the lease: after it, another worker may take over
    assert default_store().get(claimed.id).status == Status.PROCESSING


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Any:
        yield self.body
