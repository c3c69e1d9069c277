"""Finished messages expire after MESSAGE_RETENTION_DAYS (DynamoDB TTL on every item), and the
API answers 404 for them at once, before TTL has deleted anything."""

from __future__ import annotations

import time

import pytest
import requests
from django.contrib.auth.models import User

from notifications import aws, services
from notifications.domain import Status
from notifications.store import default_store
from tests.factories import make_producer, message_payload
from tests.support.worker import run_until, status_of
from tests.vendor import Answer

DAY = 86400


@pytest.fixture
def producer_api(live_server, aws, settings):
    settings.DELIVERY_ALLOWED_NETWORKS = ["127.0.0.0/8"]  # the local vendor, past the SSRF guard
    producer, key = make_producer("retained")
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {key}"
    return producer, session, f"{live_server.url}/api/v1/messages"


def expire_now(message_id: str) -> None:
    """What the passing of MESSAGE_RETENTION_DAYS does to the item (its TTL attribute is due)."""
    aws.call(
        "dynamodb",
        "update_item",
        TableName=default_store().table_name,
        Key={"pk": {"S": message_id}, "sk": {"S": "MESSAGE"}},
        UpdateExpression="SET expires_at = :past",
        ExpressionAttributeValues={":past": {"N": str(int(time.time()) - 1)}},
    )


def test_a_finished_message_expires_and_is_then_not_found(
    producer_api, make_worker, vendor, transactional_db, client
):
    _, api, url = producer_api
    target = vendor.script("/kept", Answer(200))
    # A body large enough to be kept in a request item of its own, which must outlive the message.
    payload = message_payload(target_url=target, body={"text": "x" * 2000})
    submitted = api.post(url, json=payload, timeout=30)
    assert submitted.status_code == 202
    message_id = submitted.json()["id"]
    run_until(make_worker(), lambda: status_of(message_id) == Status.COMPLETED)

    message, attempts = default_store().get_full(message_id)
    finished = message.history[-1].at
    assert message.expires_at is not None
    assert abs(message.expires_at - (time.time() + 28 * DAY)) < 120, finished
    assert [attempt.status_code for attempt in attempts] == [200]  # kept in the status item
    items = aws.call(
        "dynamodb",
        "query",
        TableName=default_store().table_name,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": message_id}},
    )["Items"]
    request_items = [item for item in items if item["sk"]["S"].startswith("REQUEST#")]
    assert len(request_items) == 1
    assert int(request_items[0]["expires_at"]["N"]) > message.expires_at  # outlives the message
    assert api.get(f"{url}/{message_id}", timeout=30).status_code == 200

    expire_now(message_id)
    for path in (f"{url}/{message_id}", f"{url}/{message_id}/attempts"):
        gone = api.get(path, timeout=30)
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "NOT_FOUND"
    listed = api.get(url, timeout=30).json()["results"]
    assert message_id not in [row["id"] for row in listed]
    client.force_login(User.objects.create_superuser("root", password="a-long-test-password"))
    assert client.get(f"/admin/herald/messages/{message_id}/").status_code == 404


def test_a_requeued_message_is_kept_again(make_worker, vendor, producer_api):
    _, api, url = producer_api
    target = vendor.script("/gone", Answer(410))
    message_id = api.post(url, json=message_payload(target_url=target), timeout=30).json()["id"]
    run_until(make_worker(), lambda: status_of(message_id) == Status.FAILED)
    assert default_store().get(message_id).expires_at is not None

    requeued = services.message_requeue(message_id=message_id, actor="operator:tests")
    assert requeued.status == Status.QUEUED and requeued.expires_at is None
