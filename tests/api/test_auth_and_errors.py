"""Authentication and the error envelope on every error status."""

import json

import pytest
from rest_framework.test import APIClient

from tests.api.conftest import assert_envelope
from tests.factories import make_producer, message_payload

URL = "/api/v1/messages"


@pytest.fixture
def anonymous(aws, db):
    return APIClient()


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Basic dXNlcjpwYXNz", "Bearer hrld_000000000000_wrong", "Bearer not-a-key"],
)
def test_missing_or_bad_credentials_are_401(anonymous, header):
    if header:
        anonymous.credentials(HTTP_AUTHORIZATION=header)
    response = anonymous.post(
        URL, data=json.dumps(message_payload()), content_type="application/json"
    )
    assert_envelope(response, 401, "AUTHENTICATION_FAILED")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_wrong_secret_for_a_real_key_id_is_401(anonymous):
    _, key = make_producer()
    anonymous.credentials(HTTP_AUTHORIZATION=f"Bearer {key[:-4]}AAAA")
    assert_envelope(anonymous.get(URL), 401, "AUTHENTICATION_FAILED")


def test_inactive_producer_is_401(anonymous):
    _, key = make_producer(active=False)
    anonymous.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert_envelope(anonymous.get(URL), 401, "AUTHENTICATION_FAILED")


def test_key_is_not_echoed_in_errors(anonymous):
    anonymous.credentials(HTTP_AUTHORIZATION="Bearer hrld_abcdefabcdef_supersecretvalue")
    response = anonymous.get(URL)
    assert "supersecretvalue" not in response.content.decode()


def test_unknown_endpoint_is_404_envelope(client):
    assert_envelope(client.get("/api/v1/nothing-here"), 404, "NOT_FOUND")
    assert_envelope(client.get("/api/v2/messages"), 404, "NOT_FOUND")


def test_method_not_allowed_is_405_envelope(client):
    assert_envelope(client.delete(URL), 405, "METHOD_NOT_ALLOWED")
    assert_envelope(client.put("/api/v1/messages/msg_x/requeue"), 405, "METHOD_NOT_ALLOWED")


def test_forbidden_is_403_envelope(client, monkeypatch):
    """No API route denies an authenticated producer today; check the handler's 403 shape."""
    from rest_framework.exceptions import PermissionDenied

    from notifications.api.errors import exception_handler

    response = exception_handler(PermissionDenied("nope"), {})
    assert response.status_code == 403
    assert response.data["error"]["code"] == "PERMISSION_DENIED"


def test_unexpected_errors_are_500_envelope_without_trace():
    from notifications.api.errors import exception_handler

    response = exception_handler(RuntimeError("secret internal detail"), {})
    assert response.status_code == 500
    assert response.data["error"]["code"] == "INTERNAL_ERROR"
    assert "secret internal detail" not in json.dumps(response.data)


@pytest.mark.parametrize("method", ["TRACE", "OPTIONS", "QUERY", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize("credentials", [False, True])
def test_unsupported_methods_are_405_before_authentication(anonymous, method, credentials):
    """A wrong method is 405 whoever asks (it used to be 401 without a key: DRF authenticated
    first), in the envelope and with the route's methods in Allow."""
    if credentials:
        anonymous.credentials(HTTP_AUTHORIZATION=f"Bearer {make_producer()[1]}")
    for path, allowed in [
        (URL, {"GET", "POST", "HEAD"}),
        (f"{URL}/msg_x", {"GET", "HEAD"}),
        (f"{URL}/msg_x/attempts", {"GET", "HEAD"}),
        (f"{URL}/msg_x/requeue", {"POST"}),
    ]:
        response = anonymous.generic(method, path)
        assert_envelope(response, 405, "METHOD_NOT_ALLOWED")
        assert set(response["Allow"].replace(" ", "").split(",")) == allowed
        assert "WWW-Authenticate" not in response


def test_retry_after_is_rounded_up():
    """A client that waits Retry-After seconds must be past the limit's window, not just short."""
    from rest_framework.exceptions import Throttled

    from notifications.api.errors import exception_handler

    response = exception_handler(Throttled(wait=1.2), {})
    assert (response.status_code, response["Retry-After"]) == (429, "2")
