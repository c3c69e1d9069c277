"""The web process's /livez, /readyz and /metrics: answered before host checks, the HTTPS redirect
and sessions; never cached; no authentication."""

from __future__ import annotations

import pytest

from tests.conftest import free_port


@pytest.fixture
def production_like(settings):
    settings.ALLOWED_HOSTS = ["herald.example.com"]
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")


def test_livez_answers_by_address_over_plain_http(client, production_like):
    response = client.get("/livez", HTTP_HOST="10.1.2.3:8000")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-store" in response["Cache-Control"]
    assert "Set-Cookie" not in response
    # The rest of the site is strict: an unknown host is refused, plain HTTP redirected.
    assert client.get("/admin/login/", HTTP_HOST="10.1.2.3:8000").status_code == 400
    assert client.get("/admin/login/", HTTP_HOST="herald.example.com").status_code == 301


def test_readyz_is_ready_when_dynamodb_and_sqs_answer(client, aws, production_like):
    response = client.get("/readyz", HTTP_HOST="10.1.2.3:8000")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "ok"
    assert set(response.json()["checks"]) == {"dynamodb", "sqs"}
    assert "no-store" in response["Cache-Control"]


def test_readyz_names_the_failing_check(client, aws, settings):
    settings.DYNAMODB_TABLE = "a-table-that-is-not-there"
    response = client.get("/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["dynamodb"] == {
        "status": "failing",
        "seconds": checks["dynamodb"]["seconds"],
        "error": "ResourceNotFoundException",
    }
    assert checks["sqs"]["status"] == "ok"


def test_readyz_fails_fast_when_aws_does_not_answer(client, settings):
    settings.AWS_ENDPOINT_URL = f"http://127.0.0.1:{free_port()}"
    settings.READINESS_TIMEOUT = 1.0
    response = client.get("/readyz")
    assert response.status_code == 503
    assert {check["status"] for check in response.json()["checks"].values()} == {"failing"}


def test_metrics_include_the_queue_depths(client, aws, production_like):
    response = client.get("/metrics", HTTP_HOST="10.1.2.3:9100")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    assert 'herald_queue_messages{queue="work",state="visible"} 0.0' in text
    assert 'herald_queue_messages{queue="dead_letter",state="delayed"} 0.0' in text
    assert "herald_submissions_total" in text


def test_probes_take_get_only(client):
    response = client.post("/livez")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
