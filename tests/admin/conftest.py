"""Operator console fixtures: staff users with and without the message permissions, a logged-in
client, and messages put in the moto-backed store in a given state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from notifications.clock import system_clock
from notifications.domain import HistoryEntry, Message, Status, format_timestamp
from notifications.store import default_store
from tests.factories import build_message

# Allowed paths through the lifecycle, as a worker and the intake would walk them.
PATHS = {
    Status.PENDING: [],
    Status.QUEUED: [Status.QUEUED],
    Status.PROCESSING: [Status.QUEUED, Status.PROCESSING],
    Status.COMPLETED: [Status.QUEUED, Status.PROCESSING, Status.COMPLETED],
    Status.FAILED: [Status.QUEUED, Status.PROCESSING, Status.FAILED],
}


def make_user(username: str, *, staff: bool = True, permissions: tuple[str, ...] = ()) -> User:
    user = User.objects.create_user(username, password="a-long-test-password", is_staff=staff)
    for codename in permissions:
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label="notifications", codename=codename)
        )
    return user


@pytest.fixture
def operator(db: None) -> User:
    return make_user("olivia", permissions=("view_message", "requeue_message"))


@pytest.fixture
def viewer(db: None) -> User:
    return make_user("victor", permissions=("view_message",))


@pytest.fixture
def console(client: Client, operator: User, aws: str) -> Client:
    client.force_login(operator)
    return client


@pytest.fixture
def put_message() -> Callable[..., Message]:
    """Store a message and walk it to `status` through real guarded transitions."""

    def put(
        status: Status = Status.FAILED, *, error: str = "HTTP 503: down", **fields: Any
    ) -> Message:
        store = default_store()
        message = build_message(status=Status.PENDING, **fields)
        store.put_new(message)
        current = Status.PENDING
        for target in PATHS[status]:
            changes: dict[str, Any] = {}
            if target == Status.PROCESSING:
                changes = {"attempt_count": 1, "budget_attempts": 1}
            elif target == Status.FAILED:
                changes = {"last_error": error}
            entry = HistoryEntry(
                current, target, format_timestamp(system_clock.now()), "worker:tests", "test"
            )
            store.transition(
                message.id,
                producer_id=message.producer_id,
                expected=current,
                target=target,
                entry=entry,
                changes=changes,
            )
            current = target
        return store.get(message.id)

    return put
