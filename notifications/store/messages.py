"""Message reads and guarded writes: put a new message, read one or many, append an attempt,
change a status (the only write that does), move a waiting message's `next_attempt_at`.

Every status change is one conditional UpdateItem naming the expected current status; a failed
condition comes back as `TransitionConflict` carrying the item as it is (ALL_OLD).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from notifications import aws
from notifications.clock import Clock
from notifications.domain import (
    TERMINAL_STATUSES,
    Attempt,
    HistoryEntry,
    Message,
    MessageExists,
    MessageTooLarge,
    Status,
    TransitionConflict,
    check_transition,
    parse_timestamp,
)
from notifications.store.items import (
    ATTEMPT_SK_PREFIX,
    MESSAGE_SK,
    attempt_to_item,
    item_size,
    item_to_attempt,
    item_to_message,
    message_key,
    message_to_item,
    serialize,
    status_partition,
)
from notifications.store.retention import Retention
from notifications.store.table import Table

# Fields a transition may change besides status and history.
MUTABLE_FIELDS = frozenset(
    {
        "attempt_count",
        "budget_attempts",
        "budget_started_at",
        "last_error",
        "last_error_code",
        "next_attempt_at",
        "lease_token",
        "lease_expires_at",
    }
)

# DynamoDB refuses items over 400 KB. A message item grows after it is written (history entries,
# the last error, the lease), so a new one must leave room for that: 16 KiB is about 80 status
# changes.
MAX_ITEM_BYTES = 400 * 1024
GROWTH_RESERVE_BYTES = 16 * 1024
MAX_NEW_MESSAGE_BYTES = MAX_ITEM_BYTES - GROWTH_RESERVE_BYTES

# Called after a write that set a status: the message as written, and the status it left.
Arrival = Callable[[Message, Status | None], None]


class MessageRecords:
    """Reads skip messages whose retention ended (DynamoDB's TTL deletes them some hours
    later): to every reader an expired message is a missing one."""

    def __init__(
        self, table: Table, *, on_arrival: Arrival, retention: Retention, clock: Clock
    ) -> None:
        self._table = table
        self._on_arrival = on_arrival
        self._retention = retention
        self._clock = clock

    def is_live(self, message: Message) -> bool:
        """False once the message's retention ended."""
        return message.expires_at is None or message.expires_at > self._clock.now().timestamp()

    def _live(self, message: Message | None) -> Message | None:
        return message if message is None or self.is_live(message) else None

    def put_new(self, message: Message) -> None:
        """Store a new message. The condition makes the id a deduplication key: with an
        idempotency key the id is derived from (producer, key), so concurrent identical requests
        race on this one write and exactly one wins; the losers get `MessageExists`. An item
        too large to store (with room to grow) is refused before anything is written:
        `MessageTooLarge`."""
        item = message_to_item(message)
        size = item_size(item)
        if size > MAX_NEW_MESSAGE_BYTES:
            raise MessageTooLarge(size, MAX_NEW_MESSAGE_BYTES)
        try:
            self._table.call(
                "put_item",
                Item=item,
                ConditionExpression="attribute_not_exists(pk)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except aws.ConditionFailed as failure:
            existing = item_to_message(failure.item) if failure.item else self.get(message.id)
            if existing is None:
                raise aws.AWSUnavailable("DynamoDB PutItem condition failed without item") from None
            raise MessageExists(existing) from None
        self._on_arrival(message, None)

    def get(self, message_id: str) -> Message | None:
        response = self._table.call("get_item", Key=message_key(message_id), ConsistentRead=True)
        item = response.get("Item")
        return self._live(item_to_message(item)) if item else None

    def get_with_attempts(self, message_id: str) -> tuple[Message | None, list[Attempt]]:
        """The message and its attempt log, in one consistent Query on the partition."""
        message = None
        attempts = []
        for item in self._table.query_items(
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues=serialize({":pk": message_id}),
            ConsistentRead=True,
        ):
            sort_key = item["sk"]["S"]
            if sort_key == MESSAGE_SK:
                message = self._live(item_to_message(item))
            elif sort_key.startswith(ATTEMPT_SK_PREFIX):
                attempts.append(item_to_attempt(item))
        return message, attempts if message else []

    def get_many(self, message_ids: Iterable[str]) -> list[Message]:
        """The messages that exist among `message_ids` (one BatchGetItem per 100), in no order."""
        keys = [{"pk": message_id, "sk": MESSAGE_SK} for message_id in dict.fromkeys(message_ids)]
        messages = (self._live(item_to_message(item)) for item in self._table.batch_get(keys))
        return [message for message in messages if message is not None]

    def current_statuses(self, message_ids: Iterable[str]) -> dict[str, Status]:
        """The status of each existing message among `message_ids`, reading nothing else."""
        keys = [{"pk": message_id, "sk": MESSAGE_SK} for message_id in dict.fromkeys(message_ids)]
        items = self._table.batch_get(
            keys, projection="pk, #status, expires_at", names={"#status": "status"}
        )
        now = self._clock.now().timestamp()
        return {
            item["pk"]["S"]: Status(item["status"]["S"])
            for item in items
            if "expires_at" not in item or int(item["expires_at"]["N"]) > now
        }

    def put_attempt(self, message_id: str, attempt: Attempt) -> None:
        expires_at = self._retention.attempt_expiry(parse_timestamp(attempt.started_at))
        self._table.call(
            "put_item", Item=attempt_to_item(message_id, attempt, expires_at=expires_at)
        )

    def transition(
        self,
        message_id: str,
        *,
        expected: Status,
        target: Status,
        entry: HistoryEntry,
        changes: Mapping[str, Any] | None = None,
        lease_token: str | None = None,
        lease_expired_before: str | None = None,
        due_by: str | None = None,
        increments: Mapping[str, int] | None = None,
    ) -> Message:
        """Move a message from `expected` to `target` in one conditional UpdateItem.

        The condition names the expected status so two actors racing on the same message cannot
        both win (a worker claiming while an operator requeues, two workers claiming the same SQS
        delivery). `lease_token` additionally requires the caller to hold the current lease, so a
        worker whose lease expired cannot overwrite the result of the worker that took over.
        `lease_expired_before` requires the lease to have expired before that instant (re-claiming
        a PROCESSING message); `due_by` requires `next_attempt_at`, if set, to be no later than
        that instant. `changes` sets other fields (a None value removes the attribute);
        `increments` adds to numeric ones.
        """
        check_transition(expected, target)
        changes = dict(changes or {})
        increments = dict(increments or {})
        unknown = (set(changes) | set(increments)) - MUTABLE_FIELDS
        if unknown:
            raise ValueError(f"transition cannot change {sorted(unknown)}")

        names = {"#status": "status", "#history": "history"}
        values: dict[str, Any] = {
            ":expected": expected.value,
            ":target": target.value,
            ":gsi_status": status_partition(target, message_id),
            ":updated_at": entry.at,
            ":entry": [entry.as_dict()],
            ":empty": [],
        }
        assignments = [
            "#status = :target",
            "gsi_status = :gsi_status",
            "updated_at = :updated_at",
            "#history = list_append(if_not_exists(#history, :empty), :entry)",
        ]
        removals = []
        # A finished message is kept for the retention period; one that moves on again is not.
        expiry = self._retention.message_expiry(parse_timestamp(entry.at))
        if target in TERMINAL_STATUSES and expiry is not None:
            values[":expires_at"] = expiry
            assignments.append("expires_at = :expires_at")
        elif target not in TERMINAL_STATUSES:
            removals.append("expires_at")
        for position, (field_name, value) in enumerate(sorted(changes.items())):
            names[f"#f{position}"] = field_name
            if value is None:
                removals.append(f"#f{position}")
            else:
                values[f":f{position}"] = value
                assignments.append(f"#f{position} = :f{position}")
        additions = []
        for position, (field_name, amount) in enumerate(sorted(increments.items())):
            names[f"#i{position}"] = field_name
            values[f":i{position}"] = amount
            additions.append(f"#i{position} :i{position}")
        expression = "SET " + ", ".join(assignments)
        if removals:
            expression += " REMOVE " + ", ".join(removals)
        if additions:
            expression += " ADD " + ", ".join(additions)

        conditions = ["attribute_exists(pk)", "#status = :expected"]
        if lease_token is not None:
            names["#lease"] = "lease_token"
            values[":lease"] = lease_token
            conditions.append("#lease = :lease")
        if lease_expired_before is not None:
            names["#lease_expiry"] = "lease_expires_at"
            values[":lease_deadline"] = lease_expired_before
            conditions.append("#lease_expiry < :lease_deadline")
        if due_by is not None:
            names["#next"] = "next_attempt_at"
            values[":due_by"] = due_by
            conditions.append("(attribute_not_exists(#next) OR #next <= :due_by)")

        try:
            response = self._table.call(
                "update_item",
                Key=message_key(message_id),
                UpdateExpression=expression,
                ConditionExpression=" AND ".join(conditions),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=serialize(values),
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except aws.ConditionFailed as failure:
            current = item_to_message(failure.item) if failure.item else None
            raise TransitionConflict(message_id, expected, current) from None
        updated = item_to_message(response["Attributes"])
        if target != expected:
            self._on_arrival(updated, expected)
        return updated

    def reschedule(
        self,
        message_id: str,
        *,
        status: Status,
        expected_next_attempt_at: str | None,
        next_attempt_at: str,
    ) -> bool:
        """Move a waiting message's `next_attempt_at` (no status change), only if it is still in
        `status` with the `next_attempt_at` the caller saw: when two reconcilers, or a reconciler
        and a worker, race, one wins and the other learns it lost (False). Used when a new queue
        message is sent for a message that stays where it is (a deferral, a lost queue message),
        so that the reconciler does not take it for lost again and again."""
        names = {"#status": "status", "#next": "next_attempt_at"}
        values: dict[str, Any] = {":status": status.value, ":next": next_attempt_at}
        condition = "#status = :status AND "
        if expected_next_attempt_at is None:
            condition += "attribute_not_exists(#next)"
        else:
            values[":expected"] = expected_next_attempt_at
            condition += "#next = :expected"
        try:
            self._table.call(
                "update_item",
                Key=message_key(message_id),
                UpdateExpression="SET #next = :next",
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=serialize(values),
            )
        except aws.ConditionFailed:
            return False  # changed meanwhile
        return True
