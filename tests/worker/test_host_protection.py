"""Host protection in running workers (their own receive loops, on threads, against moto and a
local vendor): a pause holds a host's messages without spending attempts; the circuit opens after
its threshold, lets one probe through after the cool-off and closes when it succeeds; a policy's
in-flight limit holds across two workers."""

from __future__ import annotations

from datetime import timedelta

from notifications import services
from notifications.clock import system_clock
from notifications.domain import Status, parse_timestamp
from notifications.hosts import Circuit, Transition
from notifications.store import default_store
from tests.support.submission import submit
from tests.support.waiting import wait_until
from tests.support.worker import running, status_of
from tests.vendor import Answer

HOST = "127.0.0.1"


def transitions(host: str = HOST) -> list[Transition]:
    return [event.transition for event in reversed(default_store().hosts.events(host, limit=100))]


def test_a_paused_host_gets_nothing_until_resumed_and_no_attempt_is_spent(make_worker, vendor):
    services.host_pause(host=HOST, actor="operator:olivia", reason="vendor asked for an hour")
    url = vendor.script("/paused", then=Answer(200))
    ids = [submit(url) for _ in range(3)]

    worker = make_worker(host_guard=True)
    with running(worker):
        wait_until(lambda: worker.waiting == 3, timeout=20, what="three messages waiting")
        assert vendor.requests_to("/paused") == []
        assert [default_store().get(i).attempt_count for i in ids] == [0, 0, 0]

        services.host_resume(host=HOST, actor="operator:olivia", reason="vendor is ready")
        wait_until(
            lambda: all(status_of(i) == Status.COMPLETED for i in ids),
            timeout=20,
            what="the paused messages delivered after the resume",
        )
    assert len(vendor.requests_to("/paused")) == 3
    assert transitions() == [Transition.PAUSED, Transition.RESUMED]
    (resumed, paused) = default_store().hosts.events(HOST)
    assert (paused.actor, paused.reason) == ("operator:olivia", "vendor asked for an hour")
    assert resumed.reason == "vendor is ready"


def test_a_pause_with_an_end_ends_by_itself(make_worker, vendor):
    services.host_pause(
        host=HOST,
        actor="operator:olivia",
        reason="maintenance window",
        until=system_clock.now() + timedelta(seconds=2),
    )
    url = vendor.script("/window", then=Answer(200))
    message_id = submit(url)
    with running(make_worker(host_guard=True)):
        wait_until(lambda: status_of(message_id) == Status.COMPLETED, timeout=20, what="delivery")
    (call,) = vendor.requests_to("/window")
    state = default_store().hosts.read(HOST)
    assert call.wall >= parse_timestamp(state.paused_until).timestamp()


def test_the_circuit_opens_probes_and_closes_and_no_message_fails_for_lack_of_budget(
    make_worker, vendor
):
    services.host_policy_set(host=HOST, failure_threshold=3, cool_off_seconds=1)
    url = vendor.script("/down", then=Answer(503, body=b"down"))
    ids = [submit(url) for _ in range(6)]

    worker = make_worker(host_guard=True, delays=(0.5,), max_attempts=20, concurrency=2)
    with running(worker):
        wait_until(
            lambda: transitions().count(Transition.REOPENED) >= 2,
            timeout=30,
            what=lambda: f"two failed probes (events {transitions()})",
        )
        vendor.script("/down", then=Answer(200))
        wait_until(
            lambda: all(status_of(i) == Status.COMPLETED for i in ids),
            timeout=30,
            what=lambda: f"every message delivered (events {transitions()})",
        )
    events = list(reversed(default_store().hosts.events(HOST, limit=100)))
    kinds = [event.transition for event in events]
    assert kinds[0] == Transition.OPENED and kinds[-1] == Transition.CLOSED
    probes = kinds.count(Transition.HALF_OPENED)
    assert probes == kinds.count(Transition.REOPENED) + 1
    # While the circuit was not closed, the vendor saw the probes and nothing else. (A call let
    # through just before the open may arrive a moment after it: hence the 0.2 s.)
    opened_at = parse_timestamp(events[0].at).timestamp()
    closed_at = parse_timestamp(events[-1].at).timestamp()
    calls = vendor.requests_to("/down")
    while_open = [call for call in calls if opened_at + 0.2 < call.wall <= closed_at]
    assert len(while_open) == probes
    # Cool-offs grew: the second failed probe reopened for longer than the first.
    assert "open for 2 s" in events[kinds.index(Transition.REOPENED)].reason
    messages = [default_store().get(i) for i in ids]
    assert sum(m.attempt_count for m in messages) == len(vendor.requests_to("/down"))
    assert default_store().hosts.read(HOST).circuit == Circuit.CLOSED


def test_an_in_flight_limit_holds_across_two_workers(make_worker, vendor):
    services.host_policy_set(host=HOST, max_in_flight=2)
    url = vendor.script("/limited", then=Answer(200, delay=0.3))
    ids = [submit(url) for _ in range(12)]
    first = make_worker(host_guard=True, worker_id="w1", concurrency=4)
    second = make_worker(host_guard=True, worker_id="w2", concurrency=4)
    with running(first), running(second):
        wait_until(
            lambda: all(status_of(i) == Status.COMPLETED for i in ids),
            timeout=40,
            what="every message delivered",
        )
    assert vendor.max_active["/limited"] == 2
