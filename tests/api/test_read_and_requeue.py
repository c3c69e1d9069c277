"""GET one, GET list with cursor, and requeue."""

import json

import pytest
from rest_framework.test import APIClient

from notifications.domain import HistoryEntry, Status
from notifications.store import default_store
from tests.api.conftest import assert_envelope
from tests.factories import build_message, make_producer, message_payload

URL = "/api/v1/messages"


def submit(client, **overrides):
    response = client.post(
        URL, data=json.dumps(message_payload(**overrides)), content_type="application/json"
    )
    assert response.status_code == 202
    return response.json()["id"]


def force_status(message_id, path):
    """Walk a stored message along allowed transitions (as a worker would)."""
    store = default_store()
    message = store.get(message_id)
    current = message.status
    for target in path:
        entry = HistoryEntry(current, target, "2026-11-25T10:00:00.000000Z", "worker:test", "test")
        store.transition(
            message_id,
            producer_id=message.producer_id,
            expected=current,
            target=target,
            entry=entry,
        )
        current = target


def test_get_returns_message_with_history(client):
    message_id = submit(client)
    response = client.get(f"{URL}/{message_id}")
    assert response.status_code == 200
    data = response.json()
    assert data["id"] == message_id
    assert [h["to"] for h in data["history"]] == ["PENDING", "QUEUED"]
    assert data["history"][0]["actor"].startswith("producer:")


def test_other_producers_message_is_404(client):
    message_id = submit(client)
    _, other_key = make_producer("other")
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {other_key}")
    assert_envelope(other.get(f"{URL}/{message_id}"), 404, "NOT_FOUND")
    assert_envelope(other.post(f"{URL}/{message_id}/requeue"), 404, "NOT_FOUND")
    assert other.get(URL).json()["results"] == []


def test_missing_message_is_404(client):
    assert_envelope(client.get(f"{URL}/msg_doesnotexist"), 404, "NOT_FOUND")


def test_list_newest_first_with_cursor_and_status(client):
    ids = [submit(client) for _ in range(5)]
    force_status(ids[1], [Status.PROCESSING, Status.FAILED])
    force_status(ids[3], [Status.PROCESSING, Status.FAILED])

    first = client.get(URL, {"limit": 2}).json()
    assert [m["id"] for m in first["results"]] == [ids[4], ids[3]]
    second = client.get(URL, {"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [m["id"] for m in second["results"]] == [ids[2], ids[1]]
    third = client.get(URL, {"limit": 2, "cursor": second["next_cursor"]}).json()
    assert [m["id"] for m in third["results"]] == [ids[0]]
    assert third["next_cursor"] is None

    failed = client.get(URL, {"status": "FAILED"}).json()
    assert [m["id"] for m in failed["results"]] == [ids[3], ids[1]]
    assert failed["next_cursor"] is None


@pytest.mark.parametrize(
    "params,field",
    [
        ({"status": "LOST"}, "status"),
        ({"status": "failed"}, "status"),
        ({"status": ""}, "status"),
        ({"limit": ""}, "limit"),
        ({"cursor": ""}, "cursor"),
        ({"state": "FAILED"}, "state"),
        ({"format": "json"}, "format"),
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "!!!"}, "cursor"),
        ({"cursor": "e30"}, "cursor"),
    ],
)
def test_list_rejects_bad_parameters(client, params, field):
    error = assert_envelope(client.get(URL, params), 400, "VALIDATION_ERROR")
    assert field in error["details"]


@pytest.mark.parametrize("path", ["/msg_x", "/msg_x/attempts", "/msg_x/requeue"])
def test_query_parameters_an_operation_does_not_take_are_refused(client, path):
    method = client.post if path.endswith("requeue") else client.get
    error = assert_envelope(method(f"{URL}{path}?reason=x"), 400, "VALIDATION_ERROR")
    assert error["details"] == {
        "reason": [{"message": "Unknown query parameter.", "code": "unknown_parameter"}]
    }


def test_requeue_failed_message(client):
    message_id = submit(client)
    force_status(message_id, [Status.PROCESSING, Status.FAILED])

    response = client.post(
        f"{URL}/{message_id}/requeue",
        data=json.dumps({"reason": "vendor back"}),
        content_type="application/json",
    )

    assert response.status_code == 200
    data = response.json()
    assert data["status"] == "QUEUED"
    last = data["history"][-1]
    assert (last["from"], last["to"], last["reason"]) == ("FAILED", "QUEUED", "vendor back")
    assert last["actor"].startswith("producer:")


@pytest.mark.parametrize("path", [[], [Status.PROCESSING], [Status.PROCESSING, Status.COMPLETED]])
def test_requeue_other_states_is_409_with_current_status(client, path):
    message_id = submit(client)
    force_status(message_id, path)
    expected = path[-1] if path else Status.QUEUED
    error = assert_envelope(client.post(f"{URL}/{message_id}/requeue"), 409, "INVALID_STATE")
    assert error["details"] == {"status": expected.value}
    assert default_store().get(message_id).status == expected


def test_requeue_pending_is_409(client, producer):
    message = build_message(status=Status.PENDING, producer_id=producer[0].public_id)
    default_store().put_new(message)
    error = assert_envelope(client.post(f"{URL}/{message.id}/requeue"), 409, "INVALID_STATE")
    assert error["details"] == {"status": "PENDING"}


def test_attempts_endpoint_lists_the_log(client):
    message_id = submit(client)
    response = client.get(f"{URL}/{message_id}/attempts")
    assert response.status_code == 200
    assert response.json() == {"results": []}


@pytest.mark.parametrize(
    "body,field",
    [
        ("[]", "non_field_errors"),
        ('{"reason": 5}', "reason"),
        ('{"reason": "x", "why": "y"}', "why"),
        (json.dumps({"reason": "x" * 501}), "reason"),
        ('{"reason": "\\ud800"}', "reason"),
    ],
)
def test_requeue_refuses_a_body_it_does_not_take(client, body, field):
    message_id = submit(client)
    force_status(message_id, [Status.PROCESSING, Status.FAILED])
    response = client.post(
        f"{URL}/{message_id}/requeue", data=body, content_type="application/json"
    )
    error = assert_envelope(response, 400, "VALIDATION_ERROR")
    assert field in error["details"]
    assert default_store().get(message_id).status == Status.FAILED
