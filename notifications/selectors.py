"""Reads for the API and the operator console."""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time

from notifications.domain import Attempt, Message, Status
from notifications.models import SigningSecret
from notifications.services import MessageNotFound
from notifications.store import MessageStore, default_store


class InvalidCursor(ValueError):
    pass


def encode_cursor(before: str) -> str:
    raw = json.dumps({"before": before}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        before = data["before"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise InvalidCursor("The cursor is not one this API returned.") from None
    if not isinstance(before, str) or not before:
        raise InvalidCursor("The cursor is not one this API returned.")
    return before


def message_get(
    *, message_id: str, producer_id: str | None = None, store: MessageStore | None = None
) -> tuple[Message, list[Attempt]]:
    """A message and its attempts; MessageNotFound if absent or owned by another producer."""
    store = store or default_store()
    message, attempts = store.get_with_attempts(message_id)
    if message is None or (producer_id is not None and message.producer_id != producer_id):
        raise MessageNotFound(message_id)
    return message, attempts


def message_list(
    *,
    producer_id: str | None = None,
    status: Status | None = None,
    cursor: str | None = None,
    limit: int = 50,
    store: MessageStore | None = None,
) -> tuple[list[Message], str | None]:
    """Newest first; returns the page and the cursor of the next (older) page, if any."""
    store = store or default_store()
    before = decode_cursor(cursor) if cursor else None
    messages, next_before = store.list_messages(
        status=status, producer_id=producer_id, limit=limit, before=before
    )
    return messages, encode_cursor(next_before) if next_before else None


def producer_signing_secrets(*, producer_id: str) -> list[str]:
    """The signing secrets of a producer, by the id stored on its messages (`prd_<pk>`)."""
    prefix, _, pk = producer_id.partition("_")
    if prefix != "prd" or not pk.isdigit():
        return []
    return list(SigningSecret.objects.filter(producer_id=int(pk)).values_list("secret", flat=True))


class SigningSecretCache:
    """Per-process cache of producers' signing secrets, so a delivery does not query the
    database each time. A rotation reaches workers within `ttl_seconds`."""

    def __init__(self, *, ttl_seconds: float) -> None:
        self.ttl_seconds = ttl_seconds
        self._entries: dict[str, tuple[float, list[str]]] = {}
        self._lock = threading.Lock()

    def get(self, producer_id: str) -> list[str]:
        now = time.monotonic()
        with self._lock:
            cached = self._entries.get(producer_id)
        if cached and now - cached[0] < self.ttl_seconds:
            return cached[1]
        secrets = producer_signing_secrets(producer_id=producer_id)
        with self._lock:
            self._entries[producer_id] = (now, secrets)
        return secrets
