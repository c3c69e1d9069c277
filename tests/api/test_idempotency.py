"""Idempotency-Key: replay, reuse with a different request, and 50 concurrent identical requests."""

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from rest_framework.test import APIClient

from notifications.queue import default_queue
from notifications.store import default_store
from tests.api.conftest import assert_envelope
from tests.factories import make_producer, message_payload

URL = "/api/v1/messages"


def post(client, payload, key):
    return client.post(
        URL, data=json.dumps(payload), content_type="application/json", HTTP_IDEMPOTENCY_KEY=key
    )


def test_same_key_same_request_replays_the_original(client):
    first = post(client, message_payload(), "order-1001")
    again = post(client, message_payload(), "order-1001")

    assert first.status_code == 202
    assert again.status_code == 200
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert first.has_header("Idempotent-Replayed") is False
    assert len(default_store().list_messages(limit=10)[0]) == 1


def test_same_key_different_request_is_422(client):
    post(client, message_payload(), "order-1002")
    response = post(client, message_payload(body={"event": "other"}), "order-1002")
    error = assert_envelope(response, 422, "IDEMPOTENCY_KEY_REUSED")
    assert error["details"]["message_id"].startswith("msg_")
    assert len(default_store().list_messages(limit=10)[0]) == 1


def test_keys_are_scoped_to_the_producer(client):
    first = post(client, message_payload(), "shared-key").json()
    _, other_key = make_producer("other-producer")
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {other_key}")
    second = post(other, message_payload(body={"different": True}), "shared-key")
    assert second.status_code == 202
    assert second.json()["id"] != first["id"]


@pytest.mark.e2e  # a live API server
@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_identical_requests_make_one_message_and_one_send(
    aws, live_server, faults
):
    _, key = make_producer("concurrent")
    sends = faults.count("sqs", "SendMessage")
    payload = json.dumps(message_payload())
    headers = {
        "Authorization": f"Bearer {key}",
        "Content-Type": "application/json",
        "Idempotency-Key": "signup-77",
    }

    def call(_):
        response = requests.post(
            f"{live_server.url}{URL}", data=payload, headers=headers, timeout=60
        )
        return response.status_code, response.json()["id"]

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(call, range(50)))

    statuses = sorted(code for code, _ in results)
    assert statuses.count(202) == 1 and statuses.count(200) == 49, statuses
    assert len({message_id for _, message_id in results}) == 1
    assert len(default_store().list_messages(limit=100)[0]) == 1
    assert sends() == 1
    assert default_queue().depth()["visible"] == 1
