import itertools

import pytest

from notifications.clock import ManualClock
from notifications.domain import (
    TRANSITIONS,
    IllegalTransition,
    Status,
    check_transition,
    format_timestamp,
    parse_timestamp,
)

ALLOWED = {
    (Status.PENDING, Status.QUEUED),
    (Status.PENDING, Status.PROCESSING),
    (Status.QUEUED, Status.PROCESSING),
    (Status.QUEUED, Status.QUEUED),
    (Status.PROCESSING, Status.PROCESSING),
    (Status.PROCESSING, Status.QUEUED),
    (Status.PROCESSING, Status.COMPLETED),
    (Status.PROCESSING, Status.FAILED),
    (Status.FAILED, Status.QUEUED),
}


def test_transition_table_is_exactly_the_lifecycle():
    assert set(TRANSITIONS) == ALLOWED


@pytest.mark.parametrize("pair", sorted(itertools.product(Status, Status)))
def test_check_transition(pair):
    current, target = pair
    if pair in ALLOWED:
        check_transition(current, target)
    else:
        with pytest.raises(IllegalTransition):
            check_transition(current, target)


def test_completed_is_final():
    assert not any(source == Status.COMPLETED for source, _ in TRANSITIONS)


def test_timestamps_sort_in_time_order_and_round_trip():
    clock = ManualClock()
    first = format_timestamp(clock.now())
    clock.advance(0.000001)
    second = format_timestamp(clock.now())
    assert first < second
    assert parse_timestamp(second) == clock.now()
