"""Logs in both formats (LOG_FORMAT text and json), configured from settings.LOGGING as the app
configures them, at DEBUG: a message whose vendor headers and URL hold tokens goes through the API
(with an SQS fault, which logs a warning about it), through a worker (a failed attempt, then
success), and through an unexpected error whose text quotes the submission — the way a secret
usually reaches a log. No token may appear in either format."""

from __future__ import annotations

import copy
import io
import json
import logging
import logging.config
from collections.abc import Callable, Iterator

import pytest
from django.conf import settings as django_settings
from rest_framework.test import APIClient

from notifications import services
from notifications.domain import Status
from notifications.logs import MASK, log_fields, redact
from notifications.store import default_store
from tests.factories import make_producer
from tests.support.worker import run_until, status_of
from tests.vendor import Answer

BEARER = "vendor-bearer-5f2c9a"
API_KEY = "vendor-apikey-81d3e0"
URL_TOKEN = "vendor-urltoken-33be71"
TOKENS = (BEARER, API_KEY, URL_TOKEN)


@pytest.fixture
def log_output() -> Iterator[Callable[[str], io.StringIO]]:
    """Configure logging as settings.LOGGING does, in the given format, at DEBUG, into a buffer."""

    def configure(log_format: str) -> io.StringIO:
        stream = io.StringIO()
        config = copy.deepcopy(django_settings.LOGGING)
        config["handlers"]["console"].update(formatter=log_format, stream=stream)
        config["root"]["level"] = "DEBUG"
        logging.config.dictConfig(config)
        return stream

    yield configure
    logging.config.dictConfig(django_settings.LOGGING)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_tokens_in_a_messages_vendor_headers_reach_neither_log_format(
    log_format, log_output, make_worker, vendor, faults, settings, monkeypatch
):
    settings.DELIVERY_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    output = log_output(log_format)
    _, key = make_producer()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    path = f"/hook?access_token={URL_TOKEN}"
    payload = {
        "target_url": vendor.script(path, Answer(503, body=b"busy"), then=Answer(200)),
        "headers": {"Authorization": f"Bearer {BEARER}", "X-Api-Key": API_KEY},
        "body": {"event": "signup"},
    }

    # 1. Accepted while SQS fails: the message stays PENDING, and the API logs a warning about it.
    faults.fail("sqs", "SendMessage", times=settings.AWS_MAX_ATTEMPTS)
    response = client.post("/api/v1/messages", payload, format="json")
    assert response.status_code == 202, response.content
    message_id = response.json()["id"]
    faults.clear()

    # 2. Queued, then delivered by a worker: a 503 (retried), then a 200.
    services.message_enqueue(message=default_store().get(message_id), actor="test")
    run_until(make_worker(), lambda: status_of(message_id) == Status.COMPLETED)
    assert [call.headers["X-Api-Key"] for call in vendor.requests_to(path)] == [API_KEY, API_KEY]

    # 3. A bug whose exception quotes the submission, headers and all: logged with its traceback.
    def broken_submit(*, producer_id: str, submission: services.Submission) -> None:
        raise RuntimeError(f"could not store {submission!r}")

    monkeypatch.setattr(services, "message_submit", broken_submit)
    response = client.post("/api/v1/messages", payload, format="json")
    assert response.status_code == 500

    text = output.getvalue()
    assert f"message {message_id} stays PENDING" in text
    assert "could not store" in text and "Traceback" in text
    for token in TOKENS:
        assert token not in text
    if log_format == "json":
        # One JSON object per line, tracebacks included.
        records = [json.loads(line) for line in text.splitlines() if line.strip()]
        bug = next(r for r in records if r["message"] == "unexpected error in the API")
        assert {"timestamp", "level", "logger", "message", "exc_info"} <= set(bug)
        assert bug["level"] == "ERROR" and MASK in bug["exc_info"]


def test_json_lines_carry_herald_structured_fields(log_output):
    output = log_output("json")
    logging.getLogger("notifications.test").info(
        "delivered %s",
        "msg_abc",
        extra=log_fields(
            message_id="msg_abc",
            producer_id="prd_1",
            status="COMPLETED",
            outcome="completed",
            attempt=2,
            target_host="api.vendor.example",
            duration_ms=41,
        ),
    )
    [record] = [json.loads(line) for line in output.getvalue().splitlines()]
    assert record["message"] == "delivered msg_abc"
    assert record["level"] == "INFO" and record["logger"] == "notifications.test"
    assert record["timestamp"].endswith("+00:00")
    assert record["message_id"] == "msg_abc" and record["attempt"] == 2
    assert record["target_host"] == "api.vendor.example" and record["duration_ms"] == 41


def test_text_is_one_readable_line(log_output):
    output = log_output("text")
    logging.getLogger("notifications.test").warning(
        "message %s stays PENDING", "msg_abc", extra=log_fields(message_id="msg_abc")
    )
    [line] = output.getvalue().splitlines()
    assert line.endswith("WARNING notifications.test message msg_abc stays PENDING")


def test_only_known_structured_fields_are_taken():
    with pytest.raises(TypeError, match="headers"):
        log_fields(message_id="msg_1", headers={"Authorization": "Bearer x"})
    assert log_fields(message_id="msg_1", attempt=None) == {"message_id": "msg_1"}


def test_a_field_under_a_secret_looking_name_is_masked_whole(log_output):
    output = log_output("json")
    logging.getLogger("notifications.test").info("x", extra={"api_key": "abc", "n": 1})
    record = json.loads(output.getvalue())
    assert record["api_key"] == MASK and record["n"] == 1


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("{'Authorization': 'Bearer abc.def'}", "abc.def"),
        ('{"X-Api-Key": "k-123"}', "k-123"),
        ("https://v.example/x?access_token=zzz&page=2", "zzz"),
        ("key hrld_0123456789ab_SeCrEt-value", "SeCrEt-value"),
        ("secret whsec_QUJDREVGR0g=", "QUJDREVGR0g="),
        ("password: hunter2", "hunter2"),
        ("Cookie: a=b; sessionid=xyz", "xyz"),
    ],
)
def test_credentials_are_masked(text, masked):
    assert masked not in redact(text)
    assert MASK in redact(text)


@pytest.mark.parametrize(
    "text",
    [
        "KeyError: 'pk'",
        "AuthenticationFailed: Invalid API key.",
        "message msg_abc: retry in 30s after HTTP 503",
        "queue message for unknown message msg_abc",
    ],
)
def test_ordinary_lines_are_left_alone(text):
    assert redact(text) == text
