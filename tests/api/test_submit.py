"""POST /api/v1/messages: acceptance, storage, queueing, and every validation rule."""

import json

import pytest

from notifications import aws as aws_module
from notifications.domain import Status
from notifications.queue import decode_body, default_queue
from notifications.store import default_store
from tests.api.conftest import assert_envelope
from tests.factories import message_payload

URL = "/api/v1/messages"


def post(client, payload, **headers):
    return client.post(URL, data=json.dumps(payload), content_type="application/json", **headers)


def queued_ids():
    sqs = aws_module.sqs()
    found = []
    while True:
        response = sqs.receive_message(QueueUrl=default_queue().url, MaxNumberOfMessages=10)
        batch = response.get("Messages", [])
        if not batch:
            return found
        found.extend(decode_body(m["Body"]) for m in batch)


def stored_count():
    return len(default_store().list_messages(limit=100)[0])


def test_accepts_stores_and_queues(client, producer):
    response = post(client, message_payload())

    assert response.status_code == 202
    data = response.json()
    assert data["status"] == "QUEUED"
    assert data["id"].startswith("msg_")
    assert response["Location"] == f"/api/v1/messages/{data['id']}"
    assert data["target"]["method"] == "POST"
    assert data["target"]["host"] == "vendor.example.com"
    assert data["target"]["headers"]["Authorization"] == "********"
    assert data["attempt_count"] == 0
    assert data["metadata"] == {"source": "tests"}
    for field in ("created_at", "updated_at"):
        assert data[field].endswith("Z")

    stored, _ = default_store().get_full(data["id"])
    assert stored.status == Status.QUEUED
    assert stored.producer_id == producer[0].public_id
    assert stored.request.body == '{"event":"signup","user":42}'
    assert stored.request.body_is_json is True
    assert stored.request.headers["Authorization"] == "Bearer vendor-secret"
    assert [(h.from_status, h.to_status) for h in stored.history] == [
        (None, Status.PENDING),
        (Status.PENDING, Status.QUEUED),
    ]
    assert queued_ids() == [data["id"]]


def test_sqs_body_carries_the_id_and_hints_and_nothing_secret(client, producer):
    data = post(client, message_payload()).json()
    response = aws_module.sqs().receive_message(QueueUrl=default_queue().url)
    body = response["Messages"][0]["Body"]
    assert "vendor-secret" not in body and "signup" not in body
    assert json.loads(body) == {
        "v": 1,
        "message_id": data["id"],
        "host": "vendor.example.com",
        "producer": producer[0].public_id,
    }


def test_defaults_method_and_keeps_string_body(client):
    payload = {"target_url": "http://vendor.example.com/x", "body": "a=1&b=2"}
    data = post(client, payload).json()
    stored, _ = default_store().get_full(data["id"])
    assert stored.request.method == "POST"
    assert stored.request.body == "a=1&b=2"
    assert stored.request.body_is_json is False
    assert stored.metadata == {}


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE"])
def test_allowed_methods(client, method):
    assert post(client, message_payload(method=method)).status_code == 202


BAD_PAYLOADS = {
    "relative url": ({"target_url": "/hooks"}, "target_url"),
    "no host": ({"target_url": "http:///path"}, "target_url"),
    "ftp scheme": ({"target_url": "ftp://vendor.example.com/x"}, "target_url"),
    "file scheme": ({"target_url": "file:///etc/passwd"}, "target_url"),
    "userinfo": ({"target_url": "https://user:pw@vendor.example.com/"}, "target_url"),
    "space in url": ({"target_url": "https://vendor.example.com/a b"}, "target_url"),
    "bad port": ({"target_url": "https://vendor.example.com:99999/"}, "target_url"),
    "empty label": ({"target_url": "https://a..b.example.com/"}, "target_url"),
    "label too long": ({"target_url": f"https://{'a' * 64}.example.com/"}, "target_url"),
    "missing url": ({"target_url": None}, "target_url"),
    "method": ({"method": "TRACE"}, "method"),
    "lowercase method": ({"method": "post"}, "method"),
    "headers not a map": ({"headers": ["a"]}, "headers"),
    "header value not string": ({"headers": {"X-A": 1}}, "headers"),
    "nested header": ({"headers": {"X-A": {"b": "c"}}}, "headers"),
    "header name not token": ({"headers": {"X A": "b"}}, "headers"),
    "header CR": ({"headers": {"X-A": "b\rc"}}, "headers"),
    "header LF": ({"headers": {"X-A": "b\nInjected: yes"}}, "headers"),
    "header NUL": ({"headers": {"X-A": "b\x00"}}, "headers"),
    "header too long": ({"headers": {"X-A": "v" * 4097}}, "headers"),
    "too many headers": ({"headers": {f"X-{i}": "v" for i in range(51)}}, "headers"),
    "duplicate header": ({"headers": {"X-A": "1", "x-a": "2"}}, "headers"),
    "metadata not object": ({"metadata": [1]}, "metadata"),
    "unknown field": ({"callback": "x"}, "callback"),
}
FORBIDDEN_HEADERS = [
    "Host",
    "Content-Length",
    "transfer-encoding",
    "Connection",
    "Keep-Alive",
    "Upgrade",
    "TE",
    "Trailer",
    "Proxy-Authorization",
    "proxy-connection",
    "webhook-signature",
    "Webhook-Id",
]


def assert_nothing_written(before_ids=()):
    assert stored_count() == len(before_ids)
    assert queued_ids() == list(before_ids)


@pytest.mark.parametrize("case", sorted(BAD_PAYLOADS))
def test_validation_errors_name_the_field_and_write_nothing(client, case):
    overrides, field = BAD_PAYLOADS[case]
    payload = message_payload(**overrides)
    if overrides.get("target_url", "") is None:
        del payload["target_url"]
    error = assert_envelope(post(client, payload), 400, "VALIDATION_ERROR")
    assert field in error["details"], error
    assert all({"message", "code"} <= set(item) for item in error["details"][field])
    assert_nothing_written()


@pytest.mark.parametrize("name", FORBIDDEN_HEADERS)
def test_forbidden_headers(client, name):
    error = assert_envelope(
        post(client, message_payload(headers={name: "x"})), 400, "VALIDATION_ERROR"
    )
    assert "headers" in error["details"]
    assert_nothing_written()


def test_exactly_fifty_headers_and_4k_values_are_fine(client):
    headers = {f"X-{i}": "v" * 4096 for i in range(50)}
    assert post(client, message_payload(headers=headers)).status_code == 202


def test_scheme_and_userinfo_use_the_target_not_allowed_code(client):
    error = assert_envelope(
        post(client, message_payload(target_url="ftp://vendor.example.com/")),
        400,
        "VALIDATION_ERROR",
    )
    assert error["details"]["target_url"][0]["code"] == "target_not_allowed"


def test_body_must_be_an_object(client):
    response = client.post(URL, data="[1, 2]", content_type="application/json")
    assert_envelope(response, 400, "VALIDATION_ERROR")
    assert_nothing_written()


def test_malformed_json(client):
    response = client.post(URL, data='{"target_url": ', content_type="application/json")
    error = assert_envelope(response, 400, "VALIDATION_ERROR")
    assert error["details"]["body"][0]["code"] == "malformed_json"
    assert_nothing_written()


def test_payload_too_large(client, settings):
    settings.MAX_MESSAGE_BYTES = 2048
    payload = message_payload(body="x" * 3000)
    assert_envelope(post(client, payload), 413, "PAYLOAD_TOO_LARGE")
    assert_nothing_written()
    assert post(client, message_payload(body="x" * 1000)).status_code == 202


def test_default_limit_is_256_kib(client):
    big = message_payload(body="x" * (256 * 1024))
    assert_envelope(post(client, big), 413, "PAYLOAD_TOO_LARGE")
    assert_nothing_written()
    near = message_payload(body="x" * (250 * 1024))
    assert post(client, near).status_code == 202


def test_unsupported_media_type(client):
    response = client.post(
        URL, data="target_url=x", content_type="application/x-www-form-urlencoded"
    )
    assert_envelope(response, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert_nothing_written()


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "tab\there"])
def test_invalid_idempotency_key(client, key):
    response = post(client, message_payload(), HTTP_IDEMPOTENCY_KEY=key)
    error = assert_envelope(response, 400, "VALIDATION_ERROR")
    assert "Idempotency-Key" in error["details"]
    assert_nothing_written()
