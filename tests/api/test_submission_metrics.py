"""Submissions counted by outcome, as the web /metrics shows them after real API calls."""

from __future__ import annotations

import json

from rest_framework.test import APIClient

from tests.e2e.support import metric_value
from tests.factories import message_payload


def scrape(client) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200
    return response.content.decode()


def test_metrics_count_accepted_replayed_and_rejected_submissions(client, aws):
    def count(text: str, outcome: str, code: str = "") -> float:
        return metric_value(text, "herald_submissions_total", outcome=outcome, code=code)

    before = scrape(client)
    post = json.dumps(message_payload())
    client.post("/api/v1/messages", data=post, content_type="application/json")
    for _ in range(2):
        client.post(
            "/api/v1/messages",
            data=post,
            content_type="application/json",
            HTTP_IDEMPOTENCY_KEY="k-1",
        )
    bad = client.post(
        "/api/v1/messages",
        data=json.dumps({"target_url": "ftp://x"}),
        content_type="application/json",
    )
    assert bad.status_code == 400
    anonymous = APIClient().post("/api/v1/messages", data=post, content_type="application/json")
    assert anonymous.status_code == 401
    assert client.get("/api/v1/messages/msg_nope").status_code == 404  # not a submission

    after = scrape(client)
    assert count(after, "accepted") == count(before, "accepted") + 2
    assert count(after, "replayed") == count(before, "replayed") + 1
    assert (
        count(after, "rejected", "VALIDATION_ERROR")
        == count(before, "rejected", "VALIDATION_ERROR") + 1
    )
    assert (
        count(after, "rejected", "AUTHENTICATION_FAILED")
        == count(before, "rejected", "AUTHENTICATION_FAILED") + 1
    )
    assert count(after, "rejected", "NOT_FOUND") == count(before, "rejected", "NOT_FOUND")
