"""The storage layout: the request written once, status changes that touch only a small status
item, the attempt log riding on the write that ends an attempt, and a log that never grows the
status item without bound."""

from dataclasses import replace
from datetime import timedelta

import pytest

from notifications import aws
from notifications.clock import ManualClock, system_clock
from notifications.domain import (
    Attempt,
    DeliveryRequest,
    HistoryEntry,
    MessageExists,
    Status,
    format_timestamp,
)
from notifications.store import MessageStore, default_store
from notifications.store.items import LOG_SPILL_BYTES, item_size, log_size
from tests.factories import build_message

pytestmark = pytest.mark.usefixtures("aws")


def partition(message_id):
    """Every item of a message, by sort key (read directly, as an operator would in the console)."""
    items = aws.call(
        "dynamodb",
        "query",
        TableName=default_store().table_name,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": message_id}},
        ConsistentRead=True,
    )["Items"]
    return {item["sk"]["S"]: item for item in items}


def with_body(body, **fields):
    message = build_message(**fields)
    headers = {"Authorization": "Bearer vendor-secret"}
    request = DeliveryRequest(message.request.url, "POST", headers, body, False)
    return replace(message, request=request, fingerprint=f"fp-{len(body)}-{message.id}")


class Writes:
    """The keys of every UpdateItem/PutItem the store sends (botocore events on the client)."""

    def __init__(self):
        self.keys = []
        self.client = aws.dynamodb()
        self.client.meta.events.register("before-parameter-build.dynamodb.*", self._record)

    def _record(self, model, params, **_):
        if model.name in ("UpdateItem", "PutItem"):
            key = params.get("Key") or params["Item"]
            self.keys.append((model.name, key["pk"]["S"], key["sk"]["S"]))

    def of(self, *message_ids):
        """(operation, sort key) of the writes to these messages (not the dashboard's counters,
        which the store writes behind, from another thread)."""
        return [(op, sk) for op, pk, sk in self.keys if pk in message_ids]

    def close(self):
        self.client.meta.events.unregister("before-parameter-build.dynamodb.*", self._record)


def walk(store, message, steps):
    """Apply (source, target, attempt) transitions as the services do; returns the last result."""
    current = None
    for source, target, attempt in steps:
        origin = source if isinstance(source, Status) else None
        entry = HistoryEntry(origin, target, format_timestamp(system_clock.now()), "worker:w", "t")
        current = store.transition(
            message.id,
            producer_id=message.producer_id,
            expected=source,
            target=target,
            entry=entry,
            attempt=attempt,
        )
    return current


def attempt(number, snippet="ok"):
    return Attempt(
        number=number,
        started_at="2026-11-25T10:00:00.000000Z",
        duration_ms=12,
        outcome="retry",
        worker="w",
        status_code=503,
        response_snippet=snippet,
    )


LIFECYCLE = [
    (Status.PENDING, Status.QUEUED, None),
    (Status.QUEUED, Status.PROCESSING, None),
    (Status.PROCESSING, Status.COMPLETED, attempt(1)),
]


def test_a_status_change_costs_the_same_for_a_100_byte_and_a_200_kb_body():
    store = default_store()
    small, large = with_body("x" * 100), with_body("y" * 200 * 1024)
    writes = Writes()
    try:
        for message in (small, large):
            store.put_new(message)
            walk(store, message, LIFECYCLE)
    finally:
        writes.close()

    small_items, large_items = partition(small.id), partition(large.id)
    # The small request stays in the status item; the large one has an item of its own.
    assert set(small_items) == {"MESSAGE"}
    assert [sk for sk in large_items if sk.startswith("REQUEST#")] != []
    assert item_size(large_items["MESSAGE"]) < 2048
    # DynamoDB bills an update by the item's size in 1 KB units: within one unit of each other.
    assert abs(item_size(small_items["MESSAGE"]) - item_size(large_items["MESSAGE"])) < 1024
    # Only the status item is ever updated; the request item is written once.
    written = writes.of(small.id, large.id)
    request_writes = [key for key in written if key[1].startswith("REQUEST#")]
    assert request_writes == [("PutItem", next(sk for sk in large_items if sk != "MESSAGE"))]
    assert all(sk == "MESSAGE" for op, sk in written if op == "UpdateItem")


def test_the_request_kept_apart_is_read_only_when_asked_for():
    store = default_store()
    message = with_body("z" * 5000)
    store.put_new(message)

    status_only = store.get(message.id)
    assert not status_only.request_loaded and status_only.request.body is None
    assert status_only.request.host == "vendor.example.com"  # the listing's fields are there
    loaded = store.with_request(status_only)
    assert loaded.request_loaded and loaded.request.body == "z" * 5000
    assert loaded.request.headers == {"Authorization": "Bearer vendor-secret"}
    full, _ = store.get_full(message.id)
    assert full.request == message.request


def test_a_small_request_comes_back_with_the_claim():
    store = default_store()
    message = with_body("tiny")
    store.put_new(message)
    claimed = walk(store, message, LIFECYCLE[:2])
    assert claimed.request_loaded and claimed.request.body == "tiny"


def test_a_different_request_under_a_used_key_never_replaces_the_accepted_one():
    store = default_store()
    first = with_body("a" * 3000)
    store.put_new(first)
    other = replace(with_body("b" * 3000), id=first.id, fingerprint="another-fingerprint")
    with pytest.raises(MessageExists) as exists:
        store.put_new(other)
    assert exists.value.existing.fingerprint == first.fingerprint
    stored, _ = store.get_full(first.id)
    assert stored.request.body == "a" * 3000


def test_attempts_ride_on_the_transition_and_the_log_moves_out_before_it_grows():
    store = default_store()
    message = with_body("body")
    store.put_new(message)
    snippet = "s" * 900  # attempts with sizeable response snippets fill the log quickly
    steps = [(Status.PENDING, Status.QUEUED, None)]
    for number in range(1, 31):
        # Claims as the worker makes them: PENDING or QUEUED, the entry's `from` left to the
        # entry before it, which may be in a LOG item by then.
        steps.append(((Status.QUEUED, Status.PENDING), Status.PROCESSING, None))
        steps.append((Status.PROCESSING, Status.QUEUED, attempt(number, snippet)))
    writes = Writes()
    try:
        walk(store, message, steps)
    finally:
        writes.close()

    items = partition(message.id)
    logs = sorted(sk for sk in items if sk.startswith("LOG#"))
    assert logs and logs[0] == "LOG#00001"
    assert log_size(items["MESSAGE"]) <= LOG_SPILL_BYTES + 2048  # bounded: one step past the mark
    # No attempt cost a write of its own: every write was the transition itself.
    assert [key for key in writes.of(message.id) if key[0] == "PutItem"] == []
    full, attempts = store.get_full(message.id)
    assert [a.number for a in attempts] == list(range(1, 31))
    assert all(a.response_snippet == snippet for a in attempts)
    assert len(full.history) == 1 + len(steps)  # accepted, then every transition, in order
    assert [e.to_status for e in full.history[1:]] == [target for _, target, _ in steps]
    # Every entry's `from` is the status the one before it left the message in.
    assert [e.from_status for e in full.history] == [None] + [
        e.to_status for e in full.history[:-1]
    ]


def test_a_message_that_outlives_its_request_item_gets_it_extended():
    clock = ManualClock()
    store = MessageStore(default_store().table_name, clock=clock)
    message = with_body("r" * 4000, status=Status.FAILED)
    store.put_new(message)
    request_key = next(sk for sk in partition(message.id) if sk.startswith("REQUEST#"))
    planned = int(partition(message.id)[request_key]["expires_at"]["N"])

    clock.advance(40 * 86400)  # requeued by an operator weeks later
    entry = HistoryEntry(Status.FAILED, Status.QUEUED, format_timestamp(clock.now()), "op", "late")
    store.transition(
        message.id,
        producer_id=message.producer_id,
        expected=Status.FAILED,
        target=Status.QUEUED,
        entry=entry,
    )
    extended = int(partition(message.id)[request_key]["expires_at"]["N"])
    assert extended > planned
    assert extended > (clock.now() + timedelta(days=28)).timestamp()


def test_log_items_expire_after_their_message_inline_request_or_not():
    clock = ManualClock()
    store = MessageStore(default_store().table_name, clock=clock)
    message = with_body("small")  # kept inline: no request item
    store.put_new(message)
    steps = [(Status.PENDING, Status.QUEUED, None)]
    for number in range(1, 12):
        steps.append((Status.QUEUED, Status.PROCESSING, None))
        steps.append((Status.PROCESSING, Status.QUEUED, attempt(number, "s" * 900)))
    steps.append((Status.QUEUED, Status.PROCESSING, None))
    steps.append((Status.PROCESSING, Status.FAILED, attempt(12, "s" * 900)))
    for source, target, record in steps:
        clock.advance(2 * 86400)  # retried over weeks
        entry = HistoryEntry(source, target, format_timestamp(clock.now()), "worker:w", "t")
        store.transition(
            message.id,
            producer_id=message.producer_id,
            expected=source,
            target=target,
            entry=entry,
            attempt=record,
        )
    items = partition(message.id)
    logs = [item for sk, item in items.items() if sk.startswith("LOG#")]
    assert logs
    finished = int(items["MESSAGE"]["expires_at"]["N"])
    assert all(int(log["expires_at"]["N"]) >= finished for log in logs)


def test_log_items_outlive_the_status_item_when_a_move_and_an_extension_meet():
    """A worker's result (a write that reads back only what it set) that both moves the log out
    and extends the request and LOG items' expiry must extend the LOG item it just made too."""
    clock = ManualClock()
    store = MessageStore(default_store().table_name, clock=clock)
    message = with_body("r" * 4000, status=Status.QUEUED)  # its request kept apart
    store.put_new(message)
    spills = 0
    for number in range(1, 16):
        clock.advance(40 * 86400)  # retried rarely: every write finds the expiry close
        at = format_timestamp(clock.now())
        claimed = store.transition(
            message.id,
            producer_id=message.producer_id,
            expected=Status.QUEUED,
            target=Status.PROCESSING,
            entry=HistoryEntry(Status.QUEUED, Status.PROCESSING, at, "worker:w", "claimed"),
            changes={"lease_token": f"lease-{number}"},
        )
        clock.advance(40 * 86400)  # a long call (as far as the expiry is concerned)
        at = format_timestamp(clock.now())
        store.transition(
            message.id,
            producer_id=message.producer_id,
            expected=Status.PROCESSING,
            target=Status.QUEUED,
            entry=HistoryEntry(Status.PROCESSING, Status.QUEUED, at, "worker:w", "retry"),
            changes={"lease_token": None},
            lease_token=f"lease-{number}",
            attempt=attempt(number, "s" * 900),
            known=claimed,
        )
        items = partition(message.id)
        logs = {sk: item for sk, item in items.items() if sk.startswith("LOG#")}
        spills = len(logs)
        aux = int(items["MESSAGE"]["aux_expires_at"]["N"])
        assert all(int(log["expires_at"]["N"]) >= aux for log in logs.values()), number
    assert spills >= 2
