"""Target hosts in the console: host policies as a ModelAdmin (permission-guarded, logged in
"Recent actions"); pause and resume (with a reason and an optional end), shown on the dashboard
with since-when and why; deliver now for one message and for a host; each action needs its
permission, is a POST with CSRF, and is recorded."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.test import Client

from notifications.clock import system_clock
from notifications.domain import Status, format_timestamp
from notifications.hosts import Circuit, Transition
from notifications.models import HostPolicy
from notifications.queue import default_queue
from notifications.store import default_store
from tests.admin.conftest import make_user

HOST = "vendor.example.com"  # the host of tests.factories.build_message's URL
HOST_PAGE = f"/admin/herald/hosts/{HOST}/"


def flashes(response):
    return [str(message) for message in response.context["messages"]]


@pytest.fixture
def host_operator(db):
    return make_user(
        "hana",
        permissions=(
            "view_message",
            "pause_host",
            "deliver_now",
            "add_hostpolicy",
            "change_hostpolicy",
            "view_hostpolicy",
        ),
    )


@pytest.fixture
def hosts_console(client: Client, host_operator, aws) -> Client:
    client.force_login(host_operator)
    return client


@pytest.fixture
def scheduled(put_message):
    """A QUEUED message whose retry is scheduled an hour ahead."""

    def make():
        message = put_message(Status.QUEUED)
        later = format_timestamp(system_clock.now() + timedelta(hours=1))
        assert default_store().reschedule(
            message.id, status=Status.QUEUED, expected_next_attempt_at=None, next_attempt_at=later
        )
        return default_store().get(message.id)

    return make


def test_policies_are_a_model_admin_with_permissions_and_recent_actions(
    hosts_console, host_operator
):
    response = hosts_console.post(
        "/admin/notifications/hostpolicy/add/",
        {
            "host": " Vendor.Example.COM ",
            "max_in_flight": "4",
            "max_per_second": "20",
            "note": "asked",
        },
        follow=True,
    )
    assert response.status_code == 200
    policy = HostPolicy.objects.get()
    assert (policy.host, policy.max_in_flight, policy.max_per_second) == (HOST, 4, 20)
    assert policy.failure_threshold is None  # the setting's default
    (entry,) = LogEntry.objects.all()
    assert (entry.user, entry.action_flag, entry.object_repr) == (host_operator, ADDITION, HOST)

    refused = hosts_console.post(
        "/admin/notifications/hostpolicy/add/", {"host": "https://x.example/path"}
    )
    assert refused.status_code == 200 and "not a host name" in refused.content.decode()

    viewer = make_user("victor", permissions=("view_message",))
    client = Client()
    client.force_login(viewer)
    assert client.get("/admin/notifications/hostpolicy/").status_code == 403
    assert (
        client.post(
            f"/admin/notifications/hostpolicy/{policy.pk}/change/",
            {"host": HOST, "max_in_flight": "99"},
        ).status_code
        == 403
    )
    assert HostPolicy.objects.get().max_in_flight == 4


def test_pause_shows_on_the_dashboard_and_resume_clears_it(hosts_console, host_operator):
    until = (system_clock.now() + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    response = hosts_console.post(
        f"{HOST_PAGE}pause/", {"reason": "vendor asked for an hour", "until": until}, follow=True
    )
    assert response.redirect_chain == [(HOST_PAGE, 302)]
    assert flashes(response) == [f"{HOST} paused until {until.replace('T', ' ')} UTC."]
    state = default_store().hosts.read(HOST)
    assert state.paused_at(system_clock.now())
    assert (state.paused_by, state.paused_reason) == ("operator:hana", "vendor asked for an hour")
    assert state.paused_until.startswith(until)

    dashboard = hosts_console.get("/admin/herald/dashboard/").content.decode()
    assert f'data-host="{HOST}" data-state="paused"' in dashboard
    assert "vendor asked for an hour" in dashboard and "operator:hana" in dashboard
    page = hosts_console.get(HOST_PAGE).content.decode()
    assert 'id="resume-form"' in page and 'id="pause-form"' not in page

    resumed = hosts_console.post(f"{HOST_PAGE}resume/", {"reason": "vendor is back"}, follow=True)
    assert flashes(resumed) == [f"{HOST} resumed."]
    assert not default_store().hosts.read(HOST).paused_at(system_clock.now())
    dashboard = hosts_console.get("/admin/herald/dashboard/").content.decode()
    assert 'id="no-held-back-hosts"' in dashboard
    events = default_store().hosts.events(HOST)
    assert [(e.transition, e.actor, e.reason) for e in events] == [
        (Transition.RESUMED, "operator:hana", "vendor is back"),
        (Transition.PAUSED, "operator:hana", "vendor asked for an hour"),
    ]
    assert [entry.change_message for entry in LogEntry.objects.order_by("pk")] == [
        f"Paused until {until.replace('T', ' ')} UTC: vendor asked for an hour",
        "Resumed: vendor is back",
    ]
    assert {entry.action_flag for entry in LogEntry.objects.all()} == {CHANGE}


def test_a_pause_needs_a_reason_and_a_future_end(hosts_console):
    missing = hosts_console.post(f"{HOST_PAGE}pause/", {"reason": ""}, follow=True)
    assert flashes(missing) == ["This field is required."]
    past = (system_clock.now() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    response = hosts_console.post(f"{HOST_PAGE}pause/", {"reason": "x", "until": past}, follow=True)
    assert flashes(response) == ["The end of a pause must be in the future."]
    assert default_store().hosts.read(HOST).paused_since is None
    assert not LogEntry.objects.exists()


def test_an_open_circuit_shows_on_the_dashboard_with_why(hosts_console):
    store = default_store().hosts
    for _ in range(3):
        store.record_failure(HOST)
    store.open_circuit(
        HOST,
        threshold=3,
        now=system_clock.now(),
        cool_off=30,
        actor="worker:w1",
        reason="3 consecutive failed calls; the last: HTTP 503",
    )
    dashboard = hosts_console.get("/admin/herald/dashboard/").content.decode()
    assert f'data-host="{HOST}" data-state="open"' in dashboard
    assert "3 consecutive failed calls; the last: HTTP 503" in dashboard
    page = hosts_console.get(HOST_PAGE).content.decode()
    assert 'id="circuit-state">open<' in page and "worker:w1" in page


def test_deliver_now_pulls_one_message_forward_once(hosts_console, scheduled):
    message = scheduled()
    page = hosts_console.get(f"/admin/herald/messages/{message.id}/").content.decode()
    assert 'id="deliver-now-form"' in page
    url = f"/admin/herald/messages/{message.id}/deliver-now/"

    first = hosts_console.post(url, {"reason": "vendor fixed it"}, follow=True)
    second = hosts_console.post(url, {"reason": "vendor fixed it"}, follow=True)

    assert flashes(first) == ["Pulled forward: it goes to a worker now."]
    assert flashes(second) == ["Not pulled forward: already due."]
    pulled = default_store().get(message.id)
    assert pulled.status == Status.QUEUED
    assert pulled.next_attempt_at <= format_timestamp(system_clock.now())
    (entry,) = [e for e in pulled.history if e.actor.startswith("operator:")]
    assert (entry.from_status, entry.to_status) == (Status.QUEUED, Status.QUEUED)
    assert (entry.actor, entry.reason) == ("operator:hana", "deliver now: vendor fixed it")
    assert default_queue().depth()["visible"] == 1
    (log,) = LogEntry.objects.all()
    assert (log.object_id, log.change_message) == (message.id, "Delivered now: vendor fixed it")
    page = hosts_console.get(f"/admin/herald/messages/{message.id}/").content.decode()
    assert 'id="deliver-now-form"' not in page  # due now: nothing to pull forward


def test_deliver_now_for_a_host_closes_its_circuit_and_pulls_its_retries(hosts_console, scheduled):
    messages = [scheduled() for _ in range(3)]
    store = default_store().hosts
    for _ in range(3):
        store.record_failure(HOST)
    store.open_circuit(
        HOST, threshold=3, now=system_clock.now(), cool_off=600, actor="worker:w1", reason="down"
    )

    response = hosts_console.post(
        f"{HOST_PAGE}deliver-now/", {"reason": "vendor is back"}, follow=True
    )

    assert flashes(response) == [f"{HOST}: 3 pulled forward, circuit closed."]
    assert store.read(HOST).circuit == Circuit.CLOSED
    assert store.events(HOST)[0].transition == Transition.CLOSED_BY_OPERATOR
    for message in messages:
        history = default_store().get(message.id).history
        assert history[-1].reason == "deliver now: vendor is back"
    again = hosts_console.post(f"{HOST_PAGE}deliver-now/", {"reason": "again"}, follow=True)
    assert flashes(again) == [f"{HOST}: 0 pulled forward, 3 skipped: already due."]


def test_each_action_needs_its_permission(client, put_message, scheduled, aws, db):
    message = scheduled()
    client.force_login(make_user("victor", permissions=("view_message",)))
    page = client.get(HOST_PAGE).content.decode()
    assert "pause-form" not in page and "host-deliver-now-form" not in page
    assert (
        'id="deliver-now-form"'
        not in client.get(f"/admin/herald/messages/{message.id}/").content.decode()
    )
    for url in (
        f"{HOST_PAGE}pause/",
        f"{HOST_PAGE}resume/",
        f"{HOST_PAGE}deliver-now/",
        f"/admin/herald/messages/{message.id}/deliver-now/",
    ):
        assert client.post(url, {"reason": "forged"}).status_code == 403, url
    assert default_store().hosts.read(HOST).paused_since is None
    assert default_store().get(message.id).next_attempt_at == message.next_attempt_at
    assert not LogEntry.objects.exists()
    for url in ("/admin/herald/hosts/", HOST_PAGE):
        assert client.get(url).status_code == 200
    client.force_login(make_user("stan"))
    assert client.get("/admin/herald/hosts/").status_code == 403


def test_the_host_list_finds_a_host_and_lists_policies(hosts_console):
    HostPolicy.objects.create(host=HOST, max_in_flight=3)
    listing = hosts_console.get("/admin/herald/hosts/").content.decode()
    assert f'class="host-policy" data-host="{HOST}"' in listing
    found = hosts_console.get("/admin/herald/hosts/", {"host": "Vendor.Example.com"})
    assert found.status_code == 302 and found["Location"] == HOST_PAGE
    assert hosts_console.get("/admin/herald/hosts/not a host/").status_code == 404
