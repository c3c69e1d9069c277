"""Many messages at once: items written 25 at a time with BatchWriteItem, far faster on the
stand-in than one PutItem each (for tests about scale, not about intake)."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from notifications import aws
from notifications.domain import Message, Status, format_timestamp
from notifications.store import default_store
from notifications.store.items import message_to_items
from tests.factories import build_message


def seed_quickly(
    count: int,
    shares: dict[Status, int],
    *,
    producers: tuple[str, ...] = ("prd_1",),
    hosts: int = 9,
    seed: int = 7,
) -> list[Message]:
    """`count` messages of the given statuses (by weight), a few seconds apart over the last
    day, spread over `producers` and `hosts` vendor hosts; returns them oldest first. The
    dashboard's counters are not updated (recount them if a test needs them)."""
    rng = random.Random(seed)
    statuses = [status for status, share in shares.items() for _ in range(share)]
    start = datetime.now(UTC) - timedelta(hours=20)
    messages = []
    for n in range(count):
        status = rng.choice(statuses)
        messages.append(
            build_message(
                status=status,
                producer_id=producers[n % len(producers)],
                created_at=format_timestamp(start + timedelta(seconds=n * 7)),
                url=f"https://vendor{n % hosts}.example.com/hook",
                last_error="HTTP 503: unavailable" if status == Status.FAILED else None,
            )
        )
    requests = []
    for message in messages:
        status_item, request_item = message_to_items(message, aux_expires_at=None)
        requests += [{"PutRequest": {"Item": item}} for item in (status_item, request_item) if item]
    table = default_store().table_name
    client = aws.dynamodb()

    def write(start: int) -> None:
        pending = {table: requests[start : start + 25]}
        while pending:
            pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, range(0, len(requests), 25)))
    return messages
