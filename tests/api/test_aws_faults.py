"""AWS faults injected with botocore before-send handlers (the real retry path runs)."""

import json

import pytest

from notifications import aws as aws_module
from notifications.domain import Status
from notifications.queue import default_queue
from notifications.store import default_store
from tests.api.conftest import assert_envelope
from tests.factories import message_payload

URL = "/api/v1/messages"


@pytest.fixture(autouse=True)
def quick_retries(settings, aws):
    """Two attempts per call keep these tests fast; the retry path still runs."""
    settings.AWS_MAX_ATTEMPTS = 2
    aws_module.reset_clients()
    yield
    aws_module.reset_clients()


def post(client, **headers):
    return client.post(
        URL, data=json.dumps(message_payload()), content_type="application/json", **headers
    )


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 400, "code": "ProvisionedThroughputExceededException"},
        {"status": 400, "code": "ThrottlingException"},
        {"status": 500, "code": "InternalServerError"},
        {"connection_error": True},
    ],
)
def test_put_item_failure_is_503_and_nothing_is_written(client, faults, fault):
    faults.fail("dynamodb", "PutItem", **fault)

    response = post(client)

    error = assert_envelope(response, 503, "SYSTEM_ERROR")
    assert int(response["Retry-After"]) > 0
    assert "injected" not in error["message"]
    assert faults.calls["dynamodb.PutItem"] == 2  # botocore retried before giving up
    faults.clear()
    assert default_store().list_messages(limit=10)[0] == []
    assert default_queue().depth()["visible"] == 0


@pytest.mark.parametrize(
    "fault", [{"status": 500, "code": "InternalError"}, {"connection_error": True}]
)
def test_send_failure_answers_202_pending_and_keeps_the_item(client, faults, fault):
    faults.fail("sqs", "SendMessage", **fault)

    response = post(client)

    assert response.status_code == 202
    data = response.json()
    assert data["status"] == "PENDING"
    faults.clear()
    stored, _ = default_store().get_full(data["id"])
    assert stored.status == Status.PENDING
    assert stored.request.body == '{"event":"signup","user":42}'
    assert default_queue().depth()["visible"] == 0


def test_queued_update_failure_answers_202_pending_with_message_sent(client, faults):
    faults.fail("dynamodb", "UpdateItem", status=500, code="InternalServerError")

    response = post(client)

    assert response.status_code == 202
    assert response.json()["status"] == "PENDING"
    faults.clear()
    assert default_store().get(response.json()["id"]).status == Status.PENDING
    assert default_queue().depth()["visible"] == 1


def test_idempotent_retry_after_a_503_creates_the_message(client, faults):
    faults.fail("dynamodb", "PutItem", status=500, code="InternalServerError")
    assert post(client, HTTP_IDEMPOTENCY_KEY="k-1").status_code == 503
    faults.clear()
    response = post(client, HTTP_IDEMPOTENCY_KEY="k-1")
    assert response.status_code == 202
    assert response.json()["status"] == "QUEUED"
