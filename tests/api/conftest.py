import pytest
from rest_framework.test import APIClient

from tests.factories import make_producer


@pytest.fixture
def producer(db):
    return make_producer("billing")


@pytest.fixture
def client(producer, aws):
    _, key = producer
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return api


def assert_envelope(response, status, code):
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    assert "Traceback" not in response.content.decode()
    return body["error"]
