"""`manage.py host`: policy, show, pause, resume, deliver-now."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from notifications.clock import system_clock
from notifications.domain import Status, format_timestamp
from notifications.hosts import Circuit, Transition
from notifications.models import HostPolicy
from notifications.store import default_store
from tests.factories import build_message

HOST = "vendor.example.com"


def run(*arguments: str) -> str:
    out = StringIO()
    call_command("host", *arguments, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_policy_sets_changes_and_clears(settings):
    settings.CIRCUIT_FAILURE_THRESHOLD = 10
    assert run(
        "policy", "Vendor.Example.com", "--max-in-flight", "4", "--max-per-second", "20"
    ) == (f"{HOST}: in flight 4, per second 20, circuit opens after 10 failures, cool-off 30 s\n")
    run("policy", HOST, "--failure-threshold", "0", "--max-per-second", "default", "--note", "n")
    policy = HostPolicy.objects.get()
    assert (policy.max_in_flight, policy.max_per_second, policy.failure_threshold) == (4, None, 0)
    assert policy.note == "n"
    assert "policy removed" in run("policy", HOST, "--clear")
    assert not HostPolicy.objects.exists()
    with pytest.raises(CommandError, match="not a host name"):
        run("policy", "https://vendor.example.com/x", "--max-in-flight", "1")
    with pytest.raises(CommandError, match="whole number"):
        run("policy", HOST, "--max-in-flight", "-1")


@pytest.mark.django_db
def test_pause_show_and_resume(aws):
    output = run("pause", HOST, "--reason", "vendor maintenance", "--minutes", "60")
    assert output.startswith(f"{HOST}: paused until ")
    state = default_store().hosts.read(HOST)
    assert state.paused_at(system_clock.now())
    assert state.paused_reason == "vendor maintenance"
    assert state.paused_by.startswith("operator:") and state.paused_by.endswith("(host)")

    assert f"{HOST}: paused since" in run("show")
    shown = run("show", HOST)
    assert "paused since" in shown and "paused" in shown.splitlines()[-1]

    assert run("resume", HOST, "--reason", "done") == "resumed\n"
    assert run("resume", HOST) == "was not paused\n"
    assert [event.transition for event in default_store().hosts.events(HOST)] == [
        Transition.RESUMED,
        Transition.PAUSED,
    ]


@pytest.mark.django_db
def test_deliver_now_closes_the_circuit_and_pulls_the_hosts_retries_forward(aws):
    store = default_store()
    later = format_timestamp(system_clock.now() + timedelta(hours=2))
    ids = []
    for url in (
        "https://vendor.example.com/a",
        "https://vendor.example.com/b",
        "https://other.example/c",
    ):
        message = build_message(status=Status.QUEUED, url=url, next_attempt_at=later)
        store.put_new(message)
        ids.append(message.id)
    for _ in range(2):
        store.hosts.record_failure(HOST)
    store.hosts.open_circuit(
        HOST, threshold=2, now=system_clock.now(), cool_off=300, actor="worker:w", reason="down"
    )

    output = run("deliver-now", HOST, "--reason", "vendor says it is back")

    assert output.splitlines()[-1] == f"{HOST}: 2 pulled forward, circuit closed"
    assert sorted(line.strip() for line in output.splitlines()[:-1]) == sorted(ids[:2])
    assert store.hosts.read(HOST).circuit == Circuit.CLOSED
    for message_id in ids[:2]:
        entry = store.get(message_id).history[-1]
        assert entry.reason == "deliver now: vendor says it is back"
        assert entry.actor.startswith("operator:")
    assert store.get(ids[2]).next_attempt_at == later  # another host: untouched
    with pytest.raises(CommandError):
        run("deliver-now", HOST)  # a reason is required
