"""Reads for the API and the operator console."""

from __future__ import annotations

import base64
import binascii
import json

from notifications.domain import Attempt, Message, Status
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
