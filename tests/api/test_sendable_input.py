"""The API accepts only what the worker can send: whole-token header names, header values HTTP/1.1
can carry, host names with an ASCII form, JSON that is valid Unicode and not too deep, no
Herald-owned header; and odd input is a 400 envelope, never a 500."""

import json
import logging

import pytest

from notifications.store import default_store
from tests.api.conftest import assert_envelope
from tests.factories import message_payload

URL = "/api/v1/messages"


def post(client, payload, **headers):
    return client.post(URL, data=json.dumps(payload), content_type="application/json", **headers)


def nested(depth: int) -> object:
    value: object = "bottom"
    for _ in range(depth):
        value = [value]
    return value


UNSENDABLE = {
    "header name ending in a newline": ({"headers": {"X-Campaign\n": "autumn"}}, "headers"),
    "header value outside Latin-1": ({"headers": {"X-Price": "10 €"}}, "headers"),
    "header value with a control character": ({"headers": {"X-A": "a\x01b"}}, "headers"),
    "header value with a lone surrogate": ({"headers": {"X-A": "a\ud800"}}, "headers"),
    "producer-set Herald-Message-Id": ({"headers": {"herald-message-id": "mine"}}, "headers"),
    "body nested too deep": ({"body": nested(65)}, "body"),
    "metadata nested too deep": ({"metadata": {"a": nested(64)}}, "metadata"),
    "body with a lone surrogate": ({"body": {"text": "\ud83d"}}, "body"),
    "string body with a lone surrogate": ({"body": "\udc00"}, "body"),
}


@pytest.mark.parametrize("case", sorted(UNSENDABLE))
def test_what_the_worker_cannot_send_is_refused(client, case):
    overrides, field = UNSENDABLE[case]
    error = assert_envelope(post(client, message_payload(**overrides)), 400, "VALIDATION_ERROR")
    assert field in error["details"], error
    assert default_store().list_messages(limit=5)[0] == []


def test_latin1_header_values_and_the_deepest_json_allowed_are_accepted(client):
    payload = message_payload(
        headers={"X-Name": "Zoë\tMüller"}, body=nested(63), metadata={"a": nested(62)}
    )
    assert post(client, payload).status_code == 202


def test_an_internationalised_host_name_is_accepted(client):
    response = post(client, message_payload(target_url="https://bücher.example/hook"))
    assert response.status_code == 202
    assert response.json()["target"]["host"] == "bücher.example"


def test_idempotency_key_ending_in_a_newline_is_refused(client):
    error = assert_envelope(
        post(client, message_payload(), HTTP_IDEMPOTENCY_KEY="key-1\n"), 400, "VALIDATION_ERROR"
    )
    assert "Idempotency-Key" in error["details"]


def test_json_nested_past_the_parser_is_a_400_without_a_traceback(client, caplog):
    raw = '{"target_url": "https://vendor.example.com/", "body": ' + "[" * 100_000
    raw += "]" * 100_000 + "}"
    with caplog.at_level(logging.WARNING):
        response = client.post(URL, data=raw, content_type="application/json")
    error = assert_envelope(response, 400, "VALIDATION_ERROR")
    assert error["details"]["body"][0]["code"] == "malformed_json"
    assert not [record for record in caplog.records if record.exc_info]
    assert default_store().list_messages(limit=5)[0] == []


@pytest.mark.parametrize("limit", ["²", "١٠", "1²"])
def test_a_limit_of_non_ascii_digits_is_a_400(client, limit):
    error = assert_envelope(client.get(URL, {"limit": limit}), 400, "VALIDATION_ERROR")
    assert "limit" in error["details"]
