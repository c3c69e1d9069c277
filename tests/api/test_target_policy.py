"""The SSRF guard at submission: literal addresses in any spelling, schemes, userinfo."""

import json

import pytest

from notifications.delivery import allowed_networks
from notifications.delivery.addresses import AddressPolicy
from notifications.store import default_store
from tests.api.conftest import assert_envelope
from tests.delivery.test_ssrf_guard import FORBIDDEN_HOSTS
from tests.factories import message_payload


@pytest.mark.parametrize("host", FORBIDDEN_HOSTS)
def test_forbidden_literal_targets_are_refused_at_submission(client, host):
    response = client.post(
        "/api/v1/messages",
        data=json.dumps(message_payload(target_url=f"http://{host}/latest/meta-data")),
        content_type="application/json",
    )
    error = assert_envelope(response, 400, "VALIDATION_ERROR")
    assert error["details"]["target_url"][0]["code"] == "target_not_allowed"
    assert default_store().list_messages(limit=5)[0] == []


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://vendor.example.com/x", "https://u:p@vendor.example.com/"]
)
def test_other_schemes_and_userinfo_are_refused(client, url):
    response = client.post(
        "/api/v1/messages",
        data=json.dumps(message_payload(target_url=url)),
        content_type="application/json",
    )
    error = assert_envelope(response, 400, "VALIDATION_ERROR")
    assert error["details"]["target_url"][0]["code"] == "target_not_allowed"


def test_allowed_networks_exempt_a_literal(client, settings):
    settings.DELIVERY_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    response = client.post(
        "/api/v1/messages",
        data=json.dumps(message_payload(target_url="http://127.0.0.1:9/hook")),
        content_type="application/json",
    )
    assert response.status_code == 202


def test_submissions_reuse_the_policy_parsed_at_start_up(client, monkeypatch, settings):
    settings.DELIVERY_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    allowed_networks.allowed_networks_policy()  # as at start-up
    parsed = []
    original = AddressPolicy.from_cidrs.__func__

    def counting(cls, cidrs):
        parsed.append(cidrs)
        return original(cls, cidrs)

    monkeypatch.setattr(AddressPolicy, "from_cidrs", classmethod(counting))
    for _ in range(3):
        response = client.post(
            "/api/v1/messages",
            data=json.dumps(message_payload(target_url="http://127.0.0.1:9/hook")),
            content_type="application/json",
        )
        assert response.status_code == 202
    assert parsed == []


@pytest.mark.parametrize(
    "url",
    [
        "https://vendor*.example.com/hook",
        "https://ven dor.example.com/",
        "https://a..b/",
        "https://a$b/",
    ],
)
def test_a_host_name_that_could_never_be_looked_up_is_refused(client, url):
    response = client.post(
        "/api/v1/messages",
        data=json.dumps(message_payload(target_url=url)),
        content_type="application/json",
    )
    error = assert_envelope(response, 400, "VALIDATION_ERROR")
    assert "target_url" in error["details"]
