"""The dashboard's cost does not depend on the number of messages.

Counts, recent failures and failing hosts come from the store's maintained statistics (3
BatchGetItem calls), plus one BatchGetItem for the recent failures' current status and the SQS
calls for the queue depths. This test checks that AWS call budget with 10,000 messages (speed is
printed, not asserted: timing belongs to `make bench`).
"""

import time
from datetime import UTC, datetime

from notifications import aws
from notifications.domain import HistoryEntry, Status, format_timestamp
from notifications.store import default_store
from tests.support.seeding import seed_quickly

MESSAGES = 10_000
SHARE = {
    Status.COMPLETED: 70,
    Status.FAILED: 15,
    Status.QUEUED: 10,
    Status.PENDING: 3,
    Status.PROCESSING: 2,
}
FAILING_NOW = 100  # of them, walked PROCESSING -> FAILED through the store, as a worker does


def test_dashboard_with_10000_messages_makes_a_constant_number_of_aws_calls(console):
    store = default_store()
    seeded = seed_quickly(MESSAGES, SHARE, producers=("prd_1", "prd_2", "prd_3"))
    processing = [message for message in seeded if message.status == Status.PROCESSING]
    totals = store.recount_status_counters()
    assert sum(totals.values()) == MESSAGES
    for message in processing[:FAILING_NOW]:
        entry = HistoryEntry(
            Status.PROCESSING, Status.FAILED, format_timestamp(datetime.now(UTC)), "worker:t", "x"
        )
        store.transition(
            message.id,
            producer_id=message.producer_id,
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
