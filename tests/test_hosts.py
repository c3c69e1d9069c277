"""The pure rules of host protection: host names, cool-offs, pauses, probes and fair shares of an
in-flight limit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from notifications.domain import format_timestamp
from notifications.hosts import (
    Circuit,
    HostLimits,
    HostState,
    InvalidHost,
    SlotLease,
    fair_share,
    normalize_host,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
EPOCH = NOW.timestamp()


@pytest.mark.parametrize(
    ("text", "host"),
    [(" API.Vendor.Example ", "api.vendor.example"), ("[::1]", "::1"), ("10.0.0.1", "10.0.0.1")],
)
def test_hosts_are_named_as_messages_name_them(text, host):
    assert normalize_host(text) == host


@pytest.mark.parametrize("text", ["", "https://a.example", "a.example/x", "a b", "a.example:443x/"])
def test_urls_and_junk_are_not_hosts(text):
    with pytest.raises(InvalidHost):
        normalize_host(text)


def test_cool_off_doubles_up_to_the_maximum():
    limits = HostLimits(cool_off_seconds=30, max_cool_off_seconds=100)
    assert [limits.next_cool_off(c) for c in (None, 30, 60, 100)] == [30, 60, 100, 100]


def test_a_pause_with_an_end_ends_by_itself():
    state = HostState("h", paused_since="x", paused_until=format_timestamp(NOW))
    assert state.paused_at(NOW - timedelta(seconds=1))
    assert not state.paused_at(NOW)
    assert HostState("h", paused_since="x").paused_at(NOW + timedelta(days=365))


def test_a_probe_is_due_after_the_cool_off_or_when_its_holder_let_it_lapse():
    opened = HostState("h", circuit=Circuit.OPEN, open_until=format_timestamp(NOW))
    assert not opened.probe_due(NOW - timedelta(seconds=1)) and opened.probe_due(NOW)
    probing = HostState("h", circuit=Circuit.HALF_OPEN, probe_until=format_timestamp(NOW))
    assert not probing.probe_due(NOW - timedelta(seconds=1)) and probing.probe_due(NOW)
    assert not HostState("h").probe_due(NOW)


def state_with(**leases: tuple[int, int]) -> HostState:
    return HostState(
        "h", slots={w: SlotLease(held, wanted, EPOCH + 60) for w, (held, wanted) in leases.items()}
    )


def share(state, *, demand, in_use=0, holding=0, limit=4):
    return fair_share(
        limit=limit,
        state=state,
        me="me",
        demand=demand,
        in_use=in_use,
        holding=holding,
        now_epoch=EPOCH,
    )


def test_a_worker_alone_takes_what_it_needs_up_to_the_limit():
    assert share(state_with(), demand=3) == (3, 0)
    assert share(state_with(), demand=9) == (4, 0)


def test_what_others_hold_is_not_taken_and_the_rest_is_wanted():
    assert share(state_with(other=(3, 0)), demand=4) == (1, 3)


def test_expired_leases_do_not_count():
    expired = HostState("h", slots={"dead": SlotLease(4, 0, EPOCH - 1)})
    assert share(expired, demand=4) == (4, 0)


def test_while_others_wait_a_holder_keeps_an_even_share_but_never_below_its_calls():
    waiting = state_with(other=(0, 4))
    assert share(waiting, demand=8, holding=4) == (2, 2)
    assert share(waiting, demand=8, in_use=3, holding=4) == (3, 1)


def test_while_nobody_waits_a_holder_keeps_its_share_as_demand_moves():
    assert share(state_with(), demand=1, holding=3) == (3, 0)
