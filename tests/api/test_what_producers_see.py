"""Producers learn nothing about the inside: a refused target or a failed name lookup reaches them
as a stable code, never the address or the resolver's message, and attempts and history do not
name the worker. Operators still see the detail in the console."""

from __future__ import annotations

import json
import logging

import pytest

from notifications.domain import Message, Status
from tests.factories import message_payload
from tests.support.worker import run_until, status_of

URL = "/api/v1/messages"


def attempted_once(message: Message) -> bool:
    """The first attempt is over: retried (QUEUED again) or failed for good."""
    return message.attempt_count == 1 and message.status in (Status.QUEUED, Status.FAILED)


def resolve_to_private(host: str, port: int) -> list[str]:
    return ["10.4.2.7"]


def resolve_nothing(host: str, port: int) -> list[str]:
    raise OSError(f"[Errno -2] Name or service not known: {host} via 10.0.0.2")


@pytest.mark.parametrize(
    "resolver,code,inside",
    [
        (resolve_to_private, "target_not_allowed", ["10.4.2.7", "private"]),
        (resolve_nothing, "name_not_resolved", ["10.0.0.2", "not known"]),
    ],
)
def test_a_failed_target_is_a_stable_code_for_producers(
    client, make_worker, resolver, code, inside
):
    payload = message_payload(target_url="https://billing-db.corp.example/hook")
    response = client.post(URL, data=json.dumps(payload), content_type="application/json")
    message_id = response.json()["id"]
    worker = make_worker(delays=(3600.0,), worker_id="ip-10-0-3-17:4242")
    worker.client.resolver = resolver

    run_until(worker, lambda: attempted_once(worker.store.get(message_id)))

    message = client.get(f"{URL}/{message_id}")
    attempts = client.get(f"{URL}/{message_id}/attempts")
    listing = client.get(URL)
    assert message.json()["last_error"] == code
    [attempt] = attempts.json()["results"]
    assert attempt["error"] == code
    assert "worker" not in attempt
    assert {entry["actor"] for entry in message.json()["history"]} >= {"worker"}
    for response in (message, attempts, listing):
        text = response.content.decode()
        for detail in [*inside, "ip-10-0-3-17", "4242"]:
            assert detail not in text, (detail, text)


def test_operators_still_see_the_detail(client, make_worker, admin_client, caplog):
    payload = message_payload(target_url="https://billing-db.corp.example/hook")
    response = client.post(URL, data=json.dumps(payload), content_type="application/json")
    message_id = response.json()["id"]
    worker = make_worker(worker_id="ip-10-0-3-17:4242")
    worker.client.resolver = resolve_to_private

    with caplog.at_level(logging.INFO, logger="notifications.services.delivery"):
        run_until(worker, lambda: status_of(message_id) == Status.FAILED)

    html = admin_client.get(f"/admin/herald/messages/{message_id}/").content.decode()
    assert "TargetNotAllowed: 10.4.2.7 is a private address" in html
    assert "ip-10-0-3-17:4242" in html
    assert f"message {message_id} attempt 1: TargetNotAllowed: 10.4.2.7" in caplog.text
