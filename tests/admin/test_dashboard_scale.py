"""The dashboard's cost does not depend on the number of messages.

Counts, recent failures and failing hosts come from the store's maintained statistics (3
BatchGetItem calls), plus one BatchGetItem for the recent failures' current status and the SQS
calls for the queue depths. This test checks that AWS call budget with 10,000 messages (speed is
printed, not asserted: timing belongs to `make bench`).
"""

import random
import time
from datetime import UTC, datetime, timedelta

from notifications import aws
from notifications.domain import HistoryEntry, Status, format_timestamp
from notifications.store import default_store
from notifications.store.items import message_to_item
from tests.factories import build_message

MESSAGES = 10_000
SHARE = {
    Status.COMPLETED: 70,
    Status.FAILED: 15,
    Status.QUEUED: 10,
    Status.PENDING: 3,
    Status.PROCESSING: 2,
}
FAILING_NOW = 100  # of them, walked PROCESSING -> FAILED through the store, as a worker does


def seed_quickly(count):
    """Write message items 25 at a time (BatchWriteItem) - far faster than one PutItem each on
    the stand-in - then let the store recount; returns the ids left PROCESSING."""
    rng = random.Random(7)
    store = default_store()
    client = aws.dynamodb()
    start = datetime.now(UTC) - timedelta(hours=20)
    statuses = [status for status, share in SHARE.items() for _ in range(share)]
    processing, batch = [], []
    for n in range(count):
        status = rng.choice(statuses)
        message = build_message(
            status=status,
            producer_id=f"prd_{n % 3 + 1}",
            created_at=format_timestamp(start + timedelta(seconds=n * 7)),
            url=f"https://vendor{n % 9}.example.com/hook",
            last_error="HTTP 503: unavailable" if status == Status.FAILED else None,
        )
        if status == Status.PROCESSING:
            processing.append(message.id)
        batch.append({"PutRequest": {"Item": message_to_item(message)}})
        if len(batch) == 25 or n == count - 1:
            client.batch_write_item(RequestItems={store.table_name: batch})
            batch = []
    return processing


def test_dashboard_with_10000_messages_makes_a_constant_number_of_aws_calls(console):
    store = default_store()
    processing = seed_quickly(MESSAGES)
    totals = store.recount_status_counters()
    assert sum(totals.values()) == MESSAGES
    for message_id in processing[:FAILING_NOW]:
        entry = HistoryEntry(
            Status.PROCESSING, Status.FAILED, format_timestamp(datetime.now(UTC)), "worker:t", "x"
        )
        store.transition(
            message_id,
            expected=Status.PROCESSING,
            target=Status.FAILED,
            entry=entry,
            changes={"last_error": "HTTP 410: gone"},
        )

    calls: list[str] = []

    def count(event_name: str, **_: object) -> None:
        calls.append(event_name.rsplit(".", 1)[-1])

    clients = [aws.dynamodb(), aws.sqs()]
    for client in clients:
        client.meta.events.register("after-call", count)
    timings = []
    try:
        for _ in range(3):
            calls.clear()
            started = time.perf_counter()
            response = console.get("/admin/herald/dashboard/")
            timings.append(time.perf_counter() - started)
            assert response.status_code == 200
    finally:
        for client in clients:
            client.meta.events.unregister("after-call", count)

    html = response.content.decode()
    assert f'<td id="total-count">{MESSAGES}</td>' in html
    assert html.count("/admin/herald/messages/msg_") >= 10  # the recent failures are listed
    print(f"dashboard with {MESSAGES} messages: {', '.join(f'{t * 1000:.0f} ms' for t in timings)}")
    assert 1 <= calls.count("BatchGetItem") <= 4, calls
    assert not {"Query", "Scan"} & set(calls), calls  # nothing that grows with the table
    assert len(calls) <= 8, calls
