"""The outcome policy table, Retry-After parsing and the backoff schedule (pure units)."""

import random
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings

from notifications.delivery.backoff import RetrySchedule, parse_schedule
from notifications.delivery.policy import (
    OutcomePolicy,
    Verdict,
    parse_status_set,
    retry_after_seconds,
)

POLICY = OutcomePolicy(parse_status_set(settings.DELIVERY_RETRYABLE_STATUSES))


@pytest.mark.parametrize(
    "status,verdict",
    [
        (200, Verdict.DELIVERED),
        (201, Verdict.DELIVERED),
        (204, Verdict.DELIVERED),
        (299, Verdict.DELIVERED),
        (None, Verdict.RETRY),
        (408, Verdict.RETRY),
        (425, Verdict.RETRY),
        (429, Verdict.RETRY),
        (500, Verdict.RETRY),
        (502, Verdict.RETRY),
        (503, Verdict.RETRY),
        (599, Verdict.RETRY),
        (301, Verdict.PERMANENT),
        (302, Verdict.PERMANENT),
        (304, Verdict.PERMANENT),
        (400, Verdict.PERMANENT),
        (401, Verdict.PERMANENT),
        (404, Verdict.PERMANENT),
        (410, Verdict.PERMANENT),
        (422, Verdict.PERMANENT),
        (100, Verdict.PERMANENT),
    ],
)
def test_default_policy(status, verdict):
    assert POLICY.verdict(status) is verdict


def test_retryable_set_is_configurable():
    policy = OutcomePolicy(parse_status_set("409, 500-501"))
    assert policy.verdict(409) is Verdict.RETRY
    assert policy.verdict(503) is Verdict.PERMANENT


@pytest.mark.parametrize("text", ["abc", "700", "500-400", "99"])
def test_bad_status_sets_are_refused(text):
    with pytest.raises(ValueError):
        parse_status_set(text)


NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "header,expected",
    [
        ("120", 120.0),
        ("0", 0.0),
        ("Wed, 25 Nov 2026 12:01:30 GMT", 90.0),
        ("Wed, 25 Nov 2026 11:00:00 GMT", 0.0),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after(header, expected):
    assert retry_after_seconds(header, NOW) == expected


SCHEDULE = RetrySchedule(
    delays=parse_schedule("5,30,120"), max_attempts=5, max_age_seconds=3600, jitter=0.2
)


def test_delays_follow_the_schedule_within_jitter_and_the_last_repeats():
    rng = random.Random(7)
    for attempts, base in [(1, 5), (2, 30), (3, 120), (4, 120), (9, 120)]:
        for _ in range(50):
            delay = SCHEDULE.delay_after(attempts, rng=rng)
            assert base * 0.8 <= delay <= base * 1.2


def test_jitter_spreads_delays():
    rng = random.Random(1)
    assert len({round(SCHEDULE.delay_after(1, rng=rng), 3) for _ in range(20)}) > 10


def test_retry_after_wins_but_is_clamped_to_the_schedule_maximum():
    assert SCHEDULE.delay_after(1, retry_after=60) == 60
    assert SCHEDULE.delay_after(1, retry_after=86400) == 120


def test_budget():
    start = NOW
    assert not SCHEDULE.exhausted(attempts=4, budget_started=start, now=start)
    assert SCHEDULE.exhausted(attempts=5, budget_started=start, now=start)
    assert SCHEDULE.exhausted(attempts=1, budget_started=start, now=start + timedelta(hours=1))


@pytest.mark.parametrize("text", ["", "5,-1", "x"])
def test_bad_schedules_are_refused(text):
    with pytest.raises(ValueError):
        parse_schedule(text)
