"""POST /api/v1/messages/batch: up to 100 messages, one result per item in order."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest
from rest_framework.test import APIClient

from notifications import aws
from notifications.clock import ManualClock
from notifications.domain import Status
from notifications.queue import WorkQueue
from notifications.services.intake import IntakeLimiter
from notifications.store import default_store
from tests.api.conftest import assert_envelope
from tests.factories import make_producer, message_payload

URL = "/api/v1/messages/batch"


def batch(client, items):
    return client.post(URL, {"messages": items}, format="json")


def test_each_item_gets_its_own_result_in_order_and_a_bad_one_refuses_nothing_else(client):
    items = [
        message_payload(),
        {**message_payload(body="plain"), "idempotency_key": "order-1"},
        message_payload(target_url="ftp://vendor.example.com/"),
        {**message_payload(), "idempotency_key": "bad key\n"},
        message_payload(metadata={"blob": "x" * 3000}),
    ]
    response = batch(client, items)
    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [result["status"] for result in results] == [202, 202, 400, 400, 400]
    assert results[0]["message"]["status"] == "QUEUED" and results[0]["replayed"] is False
    assert results[1]["message"]["idempotency_key"] == "order-1"
    assert results[1]["message"]["target"]["headers"]["Authorization"] != "Bearer vendor-secret"
    for result, field in zip(
        results[2:], ("target_url", "idempotency_key", "metadata"), strict=True
    ):
        assert result["error"]["code"] == "VALIDATION_ERROR"
        assert field in result["error"]["details"]
    stored = {m.id for m in default_store().list_messages(limit=20)[0]}
    assert stored == {results[0]["message"]["id"], results[1]["message"]["id"]}
    assert WorkQueue().depth()["visible"] == 2


def test_a_key_seen_before_is_replayed_and_a_different_request_under_it_refused(client):
    first = batch(client, [{**message_payload(), "idempotency_key": "k-1"}]).json()["results"][0]
    again = batch(
        client,
        [
            {**message_payload(), "idempotency_key": "k-1"},
            {**message_payload(body="other"), "idempotency_key": "k-1"},
        ],
    ).json()["results"]
    assert again[0]["status"] == 200 and again[0]["replayed"] is True
    assert again[0]["message"]["id"] == first["message"]["id"]
    assert again[1]["status"] == 422
    assert again[1]["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    # The single endpoint agrees: the same key is a replay there too.
    single = client.post(
        "/api/v1/messages", message_payload(), format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )
    assert single.status_code == 200 and single.json()["id"] == first["message"]["id"]


@pytest.mark.parametrize(
    "body",
    [
        [message_payload()],
        {"messages": []},
        {"messages": [message_payload()] * 101},
        {"messages": message_payload()},
        {"messages": [message_payload()], "extra": 1},
    ],
    ids=["a list", "empty", "101 items", "not a list", "another field"],
)
def test_a_request_that_is_not_a_batch_is_refused_whole(client, body):
    response = client.post(URL, body, format="json")
    assert_envelope(response, 400, "VALIDATION_ERROR")
    assert default_store().list_messages(limit=5)[0] == []


def test_items_over_the_producers_limit_are_refused_one_by_one(client, producer, monkeypatch):
    clock = ManualClock(datetime(2026, 11, 26, 12, 0, 1, tzinfo=UTC))
    monkeypatch.setattr("notifications.services.intake._limiter", IntakeLimiter(clock=clock))
    limited, _ = producer
    limited.intake_rate, limited.intake_burst = 1, 3
    limited.save()
    results = batch(client, [message_payload() for _ in range(5)]).json()["results"]
    assert [result["status"] for result in results] == [202, 202, 202, 429, 429]
    assert results[3]["error"]["code"] == "RATE_LIMITED" and results[3]["retry_after"] == 2


def test_when_sqs_fails_the_items_are_accepted_and_stay_pending(client, faults):
    faults.fail("sqs", "SendMessageBatch", status=500, code="InternalError")
    results = batch(client, [message_payload(), message_payload()]).json()["results"]
    assert [result["status"] for result in results] == [202, 202]
    assert {result["message"]["status"] for result in results} == {"PENDING"}
    for result in results:
        assert default_store().get(result["message"]["id"]).status == Status.PENDING


def test_when_dynamodb_fails_each_item_says_so_and_nothing_is_queued(client, faults):
    faults.fail("dynamodb", "PutItem", status=500, code="InternalServerError")
    results = batch(client, [message_payload(), message_payload()]).json()["results"]
    assert [result["status"] for result in results] == [503, 503]
    assert results[0]["error"]["code"] == "SYSTEM_ERROR" and results[0]["retry_after"] >= 1
    assert WorkQueue().depth()["visible"] == 0


def test_a_full_batch_costs_at_most_two_and_a_half_aws_calls_per_message(client):
    large_body = {"text": "x" * 2000}  # half of them keep their request in an item of its own
    items = [message_payload(body=large_body if n % 2 else {"n": n}) for n in range(100)]
    calls: Counter[str] = Counter()

    def count(event_name, **_):
        calls[event_name.rsplit(".", 1)[-1]] += 1

    clients = [aws.dynamodb(), aws.sqs()]
    for aws_client in clients:
        aws_client.meta.events.register("before-call.*.*", count)
    try:
        response = batch(client, items)
    finally:
        for aws_client in clients:
            aws_client.meta.events.unregister("before-call.*.*", count)
    assert [r["status"] for r in response.json()["results"]] == [202] * 100
    assert sum(calls.values()) / 100 <= 2.5, calls
    assert calls["SendMessageBatch"] == 10 and calls["BatchWriteItem"] == 2, calls


def test_a_batch_through_a_second_producer_is_its_own(client, db):
    _, other_key = make_producer("other")
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {other_key}")
    mine = batch(client, [{**message_payload(), "idempotency_key": "shared"}]).json()["results"]
    theirs = batch(other, [{**message_payload(), "idempotency_key": "shared"}]).json()["results"]
    assert mine[0]["status"] == theirs[0]["status"] == 202
    assert mine[0]["message"]["id"] != theirs[0]["message"]["id"]


@pytest.mark.parametrize("body", [{"n": 1}, {"text": "x" * 2000}], ids=["inline", "kept apart"])
def test_a_key_repeated_within_a_batch_is_answered_in_order_as_one_by_one(client, body):
    same, other = message_payload(body=body), message_payload(body={"other": True})
    items = [
        {**same, "idempotency_key": "dup"},
        message_payload(body=body),
        {**same, "idempotency_key": "dup"},
        {**other, "idempotency_key": "dup"},
    ]
    for _ in range(3):  # whatever order the writes would race in
        results = batch(client, items).json()["results"]
        first, plain, again, different = results
        assert plain["status"] == 202
        assert again["status"] == 200 and again["message"]["id"] == first["message"]["id"]
        assert different["status"] == 422
        assert different["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
        assert first["status"] in (202, 200)  # 202 the first time, a replay after
    assert first["status"] == 200


def test_an_accepted_message_shows_its_headers_whatever_its_size(client):
    large = message_payload(body={"text": "x" * 2000})
    single = client.post("/api/v1/messages", large, format="json").json()
    batched = batch(client, [large]).json()["results"][0]["message"]
    for shown in (single, batched):
        assert shown["target"]["headers"]["Authorization"] == "********"
