"""Sizes and encodings: text is stored as UTF-8 (not \\u-escaped), an item too large for DynamoDB is
refused with 413 before anything is written, and what DynamoDB refuses as invalid is a 4xx
envelope, never a 503 that tells the client to retry for ever."""

from __future__ import annotations

import json

import pytest

from notifications import aws as aws_module
from notifications.queue import default_queue
from notifications.selectors import encode_cursor
from notifications.store import default_store
from tests.api.conftest import assert_envelope
from tests.factories import message_payload

URL = "/api/v1/messages"
EMOJI = "\U0001f600"  # 4 bytes in UTF-8, 12 as a \ud83d\ude00 escape


def post(client, payload, **headers):
    raw = json.dumps(payload, ensure_ascii=False).encode()
    return client.post(URL, data=raw, content_type="application/json", **headers)


def raw_item(message_id: str) -> dict:
    from django.conf import settings

    return aws_module.dynamodb().get_item(
        TableName=settings.DYNAMODB_TABLE, Key={"pk": {"S": message_id}, "sk": {"S": "MESSAGE"}}
    )["Item"]


def test_an_emoji_body_under_the_request_limit_is_stored_as_utf8(client):
    body = {"text": EMOJI * 60_000}  # 240 kB of request; 720 kB once \u-escaped
    response = post(client, message_payload(body=body))

    assert response.status_code == 202, response.content
    stored, _ = default_store().get_full(response.json()["id"])
    assert stored.request.body == json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    assert json.loads(stored.request.body) == body


def test_metadata_is_stored_as_utf8(client):
    metadata = {"campaign": "秋のキャンペーン", "mood": EMOJI}
    response = post(client, message_payload(metadata=metadata))

    item = raw_item(response.json()["id"])
    assert item["metadata_json"]["S"] == json.dumps(
        metadata, separators=(",", ":"), ensure_ascii=False
    )
    assert client.get(f"{URL}/{response.json()['id']}").json()["metadata"] == metadata


def allow_requests_of_a_megabyte(settings) -> None:
    settings.MAX_MESSAGE_BYTES = 1024 * 1024
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = settings.MAX_MESSAGE_BYTES + 1024


def test_an_item_too_large_to_store_is_413_before_anything_is_written(client, settings, faults):
    allow_requests_of_a_megabyte(settings)  # the request may be this large; the item cannot
    puts = faults.count("dynamodb", "PutItem")

    response = post(client, message_payload(body="x" * 395_000))

    error = assert_envelope(response, 413, "PAYLOAD_TOO_LARGE")
    assert error["details"]["size"] > error["details"]["limit"]
    assert puts() == 0
    assert default_store().list_messages(limit=5)[0] == []
    assert default_queue().depth()["visible"] == 0


def test_the_largest_storable_item_is_accepted(client, settings):
    allow_requests_of_a_megabyte(settings)
    assert post(client, message_payload(body="x" * 370_000)).status_code == 202


@pytest.fixture
def quick_retries(settings, aws):
    settings.AWS_MAX_ATTEMPTS = 2
    aws_module.reset_clients()
    yield
    aws_module.reset_clients()


def test_a_write_dynamodb_refuses_as_invalid_is_a_400_not_a_503(client, quick_retries, faults):
    faults.fail("dynamodb", "PutItem", status=400, code="ValidationException")

    response = post(client, message_payload())

    error = assert_envelope(response, 400, "VALIDATION_ERROR")
    assert "Retry-After" not in response
    assert "injected" not in error["message"]
    faults.clear()
    assert default_store().list_messages(limit=5)[0] == []


@pytest.mark.parametrize(
    "path,params",
    [
        (f"{URL}/msg_{'x' * 3000}", {}),  # DynamoDB: a partition key over 2,048 bytes
        (f"{URL}/msg_{'x' * 3000}/attempts", {}),
        (URL, {"cursor": encode_cursor("2026-11-25T10:00:00.000000Z#" + "x" * 3000)}),
    ],
)
def test_a_read_dynamodb_refuses_as_invalid_is_a_400_not_a_503(
    client, quick_retries, faults, path, params
):
    # moto does not check key sizes; DynamoDB answers such a read with a ValidationException.
    faults.fail("dynamodb", "Query", status=400, code="ValidationException")
    response = client.get(path, params)
    assert_envelope(response, 400, "VALIDATION_ERROR")
    assert "Retry-After" not in response
