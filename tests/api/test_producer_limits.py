"""Producers' intake limits (429 with Retry-After, held across processes through the table) and
API key rotation with a grace period, through the HTTP API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import requests

from notifications import services
from notifications.clock import ManualClock
from notifications.models import Producer
from notifications.services.intake import IntakeLimit, IntakeLimiter
from notifications.store import default_store
from tests.factories import make_producer, message_payload


@pytest.fixture
def http_api(live_server, aws):
    return f"{live_server.url}/api/v1/messages"


def post(url, key, **payload):
    return requests.post(
        url,
        json=message_payload(target_url="https://vendor.example.com/hook", **payload),
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def test_a_producer_over_its_limit_gets_429_with_retry_after(
    http_api, transactional_db, monkeypatch
):
    # The API's limiter with a clock that stands still, so the four submissions share a window.
    clock = ManualClock(datetime(2026, 11, 26, 12, 0, 1, tzinfo=UTC))
    monkeypatch.setattr("notifications.services.intake._limiter", IntakeLimiter(clock=clock))
    limited, limited_key = make_producer("limited")
    limited.intake_rate, limited.intake_burst = 1, 3  # 3 submissions per 3-second window
    limited.save()
    _, other_key = make_producer("other")

    answers = [post(http_api, limited_key).status_code for _ in range(4)]
    assert answers.count(202) == 3 and answers[-1] == 429, answers
    refused = post(http_api, limited_key)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "RATE_LIMITED"
    assert refused.headers["Retry-After"] == "2"  # the window is 12:00:00-12:00:03
    # Nothing was written for the refused submissions; the other producer is not affected.
    written = default_store().list_messages(producer_id=limited.public_id, limit=10)[0]
    assert len(written) == 3
    assert post(http_api, other_key).status_code == 202


def test_the_limit_holds_across_processes(aws):
    """Two limiters, as two API processes would have, share one window's limit through the
    table: between them they admit exactly the limit, whatever chunks they take."""
    clock = ManualClock(datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC))
    first, second = IntakeLimiter(clock=clock), IntakeLimiter(clock=clock)
    limit = IntakeLimit(rate=25, burst=50)  # 50 per 2-second window, chunks of 5
    admitted = 0
    for turn in range(80):
        limiter = first if turn % 3 else second
        if limiter.admit(producer_id="prd_shared", limit=limit) is None:
            admitted += 1
    assert admitted <= 50
    assert admitted >= 50 - 2 * (limit.chunk - 1)  # at most a chunk's remainder idle per process
    clock.advance(2)  # the next window
    assert first.admit(producer_id="prd_shared", limit=limit) is None


def test_a_chunk_costs_one_aws_call_and_no_limit_costs_none(faults):
    updates = faults.count("dynamodb", "UpdateItem")
    limiter = IntakeLimiter()
    limit = IntakeLimit(rate=100, burst=200)  # chunks of 10
    assert all(limiter.admit(producer_id="prd_a", limit=limit) is None for _ in range(10))
    assert updates() == 1
    for _ in range(5):
        assert limiter.admit(producer_id="prd_free", limit=IntakeLimit(rate=0, burst=0)) is None
    assert updates() == 1


def test_rotation_with_a_grace_period_keeps_the_old_key_until_it_ends(http_api, transactional_db):
    producer, old_key = make_producer("rotating")
    clock = ManualClock()
    new_key = services.producer_api_key_rotate(
        producer=producer, keep_old_for=timedelta(hours=24), clock=clock
    )
    assert post(http_api, old_key).status_code == 202
    assert post(http_api, new_key).status_code == 202

    Producer.objects.filter(pk=producer.pk).update(
        previous_key_valid_until=datetime.now(UTC) - timedelta(seconds=1)
    )
    expired = post(http_api, old_key)
    assert expired.status_code == 401
    assert expired.json()["error"]["code"] == "AUTHENTICATION_FAILED"
    assert post(http_api, new_key).status_code == 202

    # A rotation without a grace period ends the previous key at once.
    newest = services.producer_api_key_rotate(producer=producer)
    assert post(http_api, new_key).status_code == 401
    assert post(http_api, newest).status_code == 202


def test_concurrent_submissions_in_one_process_share_its_chunks(aws):
    """Threads that find the chunk spent at the same moment take one new chunk between them,
    not one each: 50 at once under a limit of 200 are all admitted."""
    from concurrent.futures import ThreadPoolExecutor

    limiter = IntakeLimiter()
    limit = IntakeLimit(rate=100, burst=200)
    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(
            pool.map(lambda _: limiter.admit(producer_id="prd_busy", limit=limit), range(50))
        )
    assert answers == [None] * 50
