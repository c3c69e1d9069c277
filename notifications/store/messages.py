"""Message reads and guarded writes: put a new message, read one or many (with or without its
request and older log), change a status (the only write that does, appending an attempt when
there was one), move a waiting message's `next_attempt_at`.

Every status change is one conditional UpdateItem of the status item naming the expected current
status; a failed condition comes back as `TransitionConflict` carrying the item as it is
(ALL_OLD). The request item is written once and never touched again (but for the rare extension
of its expiry).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
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
    LOG_SK_PREFIX,
    LOG_SPILL_BYTES,
    MESSAGE_SK,
    REQUEST_SK,
    attempt_record,
    attempts_of,
    deserialize,
    history_text,
    item_size,
    item_to_message,
    log_size,
    message_key,
    message_to_items,
    producer_status_partition,
    request_sort_key,
    serialize,
    status_partition,
    updated_message,
    with_request,
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

# DynamoDB refuses items over 400 KB. The request item is never rewritten; the status item grows
# (history entries and attempts, until they move to a LOG item at LOG_SPILL_BYTES, the last
# error, the lease), so a new one must leave room for that.
MAX_ITEM_BYTES = 400 * 1024
GROWTH_RESERVE_BYTES = 16 * 1024
MAX_NEW_MESSAGE_BYTES = MAX_ITEM_BYTES - GROWTH_RESERVE_BYTES

# Status items of a batch written at a time (each its own conditional PutItem).
PARALLEL_WRITES = 8

# Called after a write that set a status: the message as written, and the status it left.
Arrival = Callable[[Message, Status | None], None]
# Called after a write that stored an attempt.
AttemptStored = Callable[[Attempt], None]


class MessageRecords:
    """Reads skip messages whose retention ended (DynamoDB's TTL deletes them some hours
    later): to every reader an expired message is a missing one."""

    def __init__(
        self,
        table: Table,
        *,
        on_arrival: Arrival,
        retention: Retention,
        clock: Clock,
        on_attempt: AttemptStored | None = None,
    ) -> None:
        self._table = table
        self._on_arrival = on_arrival
        self._on_attempt = on_attempt
        self._retention = retention
        self._clock = clock

    def is_live(self, message: Message) -> bool:
        """False once the message's retention ended."""
        return message.expires_at is None or message.expires_at > self._clock.now().timestamp()

    def _live(self, message: Message | None) -> Message | None:
        return message if message is None or self.is_live(message) else None

    def put_new(self, message: Message) -> None:
        """Store a new message: its request item (unless inline), then its status item. The
        status item's condition makes the id a deduplication key: with an idempotency key the id
        is derived from (producer, key), so concurrent identical requests race on this one write
        and exactly one wins; the losers get `MessageExists`. The request item's sort key names
        the request's fingerprint, so a different request under a used key never overwrites the
        one the message was accepted with (it leaves an item that TTL removes). An item too large
        to store (with room to grow) is refused before anything is written: `MessageTooLarge`."""
        status_item, request_item = self._items_for(message)
        if request_item is not None:
            self._table.call("put_item", Item=request_item)
        self._put_status(message, status_item)

    def put_new_many(self, messages: Sequence[Message]) -> list[Exception | None]:
        """Store new messages as `put_new` does, for a batch: the request items kept apart in
        BatchWriteItem calls of 25, then each status item's conditional PutItem (a few at a time).
        Returns, per message, None when it was stored, else what `put_new` would have raised
        (`MessageExists`, `MessageTooLarge`, `aws.AWSUnavailable`); one message's failure does
        not stop the others."""
        outcomes: list[Exception | None] = [None] * len(messages)
        prepared: list[tuple[int, dict[str, Any], dict[str, Any] | None]] = []
        for index, message in enumerate(messages):
            try:
                status_item, request_item = self._items_for(message)
            except MessageTooLarge as too_large:
                outcomes[index] = too_large
                continue
            prepared.append((index, status_item, request_item))
        apart = [(index, request) for index, _, request in prepared if request is not None]
        written = self._table.batch_put([request for _, request in apart])
        unwritten = {index for (index, _), ok in zip(apart, written, strict=True) if not ok}
        for index in unwritten:
            outcomes[index] = aws.AWSUnavailable("DynamoDB BatchWriteItem: request not stored")

        def put(entry: tuple[int, dict[str, Any], dict[str, Any] | None]) -> None:
            index, status_item, _ = entry
            try:
                self._put_status(messages[index], status_item)
            except (MessageExists, aws.AWSUnavailable) as failure:
                outcomes[index] = failure

        with ThreadPoolExecutor(PARALLEL_WRITES) as pool:
            list(pool.map(put, [entry for entry in prepared if entry[0] not in unwritten]))
        return outcomes

    def _items_for(self, message: Message) -> tuple[dict[str, Any], dict[str, Any] | None]:
        status_item, request_item = message_to_items(
            message, aux_expires_at=self._retention.aux_expiry(self._clock.now())
        )
        size = max(item_size(status_item), item_size(request_item or {}) + GROWTH_RESERVE_BYTES)
        if size > MAX_NEW_MESSAGE_BYTES:
            raise MessageTooLarge(size, MAX_NEW_MESSAGE_BYTES)
        return status_item, request_item

    def _put_status(self, message: Message, status_item: dict[str, Any]) -> None:
        try:
            self._table.call(
                "put_item",
                Item=status_item,
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
        """The message from its status item (one strongly consistent read). A request kept in an
        item of its own is not read (`request_loaded` False; see `with_request`), nor the older
        history in LOG items (see `get_full`)."""
        response = self._table.call("get_item", Key=message_key(message_id), ConsistentRead=True)
        item = response.get("Item")
        return self._live(item_to_message(item)) if item else None

    def with_request(self, message: Message) -> Message:
        """`message` with its request's headers and body (one read when they are kept apart).
        The request item is immutable, so an eventually consistent read serves unless it was
        written a moment ago; then the read is repeated strongly consistent."""
        if message.request_loaded:
            return message
        key = message_key(message.id, request_sort_key(message.fingerprint))
        for consistent in (False, True):
            item = self._table.call("get_item", Key=key, ConsistentRead=consistent).get("Item")
            if item:
                return with_request(message, item)
        raise aws.AWSUnavailable(f"the request item of {message.id} is missing")

    def get_full(self, message_id: str) -> tuple[Message | None, list[Attempt]]:
        """The message with its request, its whole history and its attempt log: one strongly
        consistent Query on the message's partition (status, request and LOG items)."""
        status_item = None
        requests: dict[str, dict[str, Any]] = {}
        logs = []
        for item in self._table.query_items(
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues=serialize({":pk": message_id}),
            ConsistentRead=True,
        ):
            sort_key = item["sk"]["S"]
            if sort_key == MESSAGE_SK:
                status_item = item
            elif sort_key.startswith(REQUEST_SK):
                requests[sort_key] = item
            elif sort_key.startswith(LOG_SK_PREFIX):
                logs.append(item)  # in sort-key order: LOG#00001, LOG#00002, ...
        if status_item is None:
            return None, []
        fingerprint = deserialize({"f": status_item.get("fingerprint", {"S": ""})})["f"]
        message = self._live(
            item_to_message(
                status_item,
                request_item=requests.get(request_sort_key(fingerprint)),
                log_items=logs,
            )
        )
        return (message, attempts_of(status_item, logs)) if message else (None, [])

    def get_many(self, message_ids: Iterable[str]) -> list[Message]:
        """The messages that exist among `message_ids` (one BatchGetItem per 100), in no order;
        read from their status items (see `get`)."""
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

    def transition(
        self,
        message_id: str,
        *,
        producer_id: str,
        expected: Status | tuple[Status, ...],
        target: Status,
        entry: HistoryEntry,
        changes: Mapping[str, Any] | None = None,
        lease_token: str | None = None,
        lease_expired_before: str | None = None,
        due_by: str | None = None,
        next_attempt_was: str | None = None,
        increments: Mapping[str, int] | None = None,
        attempt: Attempt | None = None,
        known: Message | None = None,
    ) -> Message:
        """Move a message from `expected` to `target` in one conditional UpdateItem of its status
        item (the request item is not touched, whatever its size).

        The condition names the expected status so two actors racing on the same message cannot
        both win (a worker claiming while an operator requeues, two workers claiming the same SQS
        delivery). `lease_token` additionally requires the caller to hold the current lease, so a
        worker whose lease expired cannot overwrite the result of the worker that took over.
        `lease_expired_before` requires the lease to have expired before that instant (re-claiming
        a PROCESSING message); `due_by` requires `next_attempt_at`, if set, to be no later than
        that instant; `next_attempt_was` requires `next_attempt_at` to be that value still (an
        operator pulling a retry forward acts on the schedule they saw). `changes` sets other fields (a None value removes the attribute);
        `increments` adds to numeric ones; `attempt` is appended to the attempt log in the same
        write. `producer_id` places the message in the producer's status index partition (the
        condition checks it is the message's producer).

        `expected` may name several statuses (a worker claims a message PENDING or QUEUED in one
        write: its queue message can arrive before the intake marked it QUEUED). The write then
        keeps the status it found in `left_status`, and the history entry leaves its `from` to
        the entry before it (see `history_text`): every status change appends exactly one entry
        in the same write, so the entry before is the status it left.

        The returned message is read from the status item: `request_loaded` is False when the
        request is kept apart (see `with_request`). A caller that holds the message as the write
        finds it (`known`: the guard makes sure nothing else changed it) gets back only what the
        write changed, applied to `known`: DynamoDB returns fewer attributes to parse.
        """
        statuses = (expected,) if isinstance(expected, Status) else tuple(expected)
        for status in statuses:
            check_transition(status, target)
        changes = dict(changes or {})
        increments = dict(increments or {})
        unknown = (set(changes) | set(increments)) - MUTABLE_FIELDS
        if unknown:
            raise ValueError(f"transition cannot change {sorted(unknown)}")

        names = {"#status": "status", "#history": "history", "#producer": "producer_id"}
        values: dict[str, Any] = {
            ":target": target.value,
            ":producer": producer_id,
            ":gsi_status": status_partition(target, message_id),
            ":gsi_producer_status": producer_status_partition(producer_id, target, message_id),
            ":updated_at": entry.at,
            ":entry": [history_text(entry, derived=len(statuses) > 1)],
            ":empty": [],
        }
        # Operands are read from the item as it was, so `left_status` gets the status it left.
        assignments = ["left_status = #status"] if len(statuses) > 1 else []
        assignments += [
            "#status = :target",
            "gsi_status = :gsi_status",
            "gsi_producer_status = :gsi_producer_status",
            "updated_at = :updated_at",
            "#history = list_append(if_not_exists(#history, :empty), :entry)",
        ]
        if attempt is not None:
            names["#attempts"] = "attempts"
            values[":attempt"] = [attempt_record(attempt)]
            assignments.append(
                "#attempts = list_append(if_not_exists(#attempts, :empty), :attempt)"
            )
        removals = []
        removed = []  # the attribute names behind `removals`
        # A finished message is kept for the retention period; one that moves on again is not.
        expiry = self._retention.message_expiry(parse_timestamp(entry.at))
        if target in TERMINAL_STATUSES and expiry is not None:
            values[":expires_at"] = expiry
            assignments.append("expires_at = :expires_at")
        elif target not in TERMINAL_STATUSES:
            removals.append("expires_at")
            removed.append("expires_at")
        for position, (field_name, value) in enumerate(sorted(changes.items())):
            names[f"#f{position}"] = field_name
            if value is None:
                removals.append(f"#f{position}")
                removed.append(field_name)
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

        for position, status in enumerate(statuses):
            values[f":expected{position}"] = status.value
        allowed = ", ".join(f":expected{position}" for position in range(len(statuses)))
        conditions = ["attribute_exists(pk)", f"#status IN ({allowed})", "#producer = :producer"]
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
        if next_attempt_was is not None:
            names["#next_was"] = "next_attempt_at"
            values[":next_was"] = next_attempt_was
            conditions.append("#next_was = :next_was")

        try:
            response = self._table.call(
                "update_item",
                Key=message_key(message_id),
                UpdateExpression=expression,
                ConditionExpression=" AND ".join(conditions),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=serialize(values),
                ReturnValues="ALL_NEW" if known is None else "UPDATED_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except aws.ConditionFailed as failure:
            current = item_to_message(failure.item) if failure.item else None
            raise TransitionConflict(message_id, statuses[0], current) from None
        item = response["Attributes"]  # the whole status item, or (with `known`) what was set
        if known is None:
            updated = item_to_message(item)
        else:
            updated = updated_message(known, item, removed)
        left = statuses[0] if len(statuses) == 1 else Status(item["left_status"]["S"])
        if target != left:
            self._on_arrival(updated, left)
        if attempt is not None and self._on_attempt is not None:
            self._on_attempt(attempt)
        # Upkeep, rarely needed. With `known` the answer holds only what this write set: the
        # history (always appended) and the attempt log when an attempt was. A write without an
        # attempt checks its history alone; the next claim, which reads the whole item back,
        # checks both, so the log passes LOG_SPILL_BYTES by at most the entries since that claim.
        whole = item if known is None else None
        segments = None
        if log_size(item) > LOG_SPILL_BYTES:  # the log is moved out
            whole = whole or self._status_item(message_id)
            if whole is not None:
                segments = self._keep_log_small(whole)
        if self._retention.needs_aux_extension(
            updated.expires_at, updated.aux_expires_at, self._clock.now()
        ):
            whole = whole or self._status_item(message_id)
            if whole is not None:
                until = self._extend_aux(whole, segments)
                if until is not None:
                    updated = replace(updated, aux_expires_at=until)
        return updated

    def _status_item(self, message_id: str) -> dict[str, Any] | None:
        """The status item as it is now (for the rare upkeep a transition's answer cannot
        serve); None when it cannot be read now (the next transition tries again)."""
        try:
            response = self._table.call(
                "get_item", Key=message_key(message_id), ConsistentRead=True
            )
        except (aws.AWSUnavailable, aws.AWSRefused):
            return None
        return response.get("Item")

    def _keep_log_small(self, item: Mapping[str, Any]) -> int | None:
        """Move the status item's log to a new LOG item once it passes LOG_SPILL_BYTES: one
        transaction puts the LOG item and cuts the moved entries from the status item, so no
        entry is lost or shown twice. Losing a race (another writer moved or appended first) is
        harmless: the next transition tries again. Returns the number of LOG items after a
        move, else None."""
        if log_size(item) <= LOG_SPILL_BYTES:
            return None
        data = deserialize(item)
        message_id = data["pk"]
        segment = int(data.get("log_segments", 0)) + 1
        history, attempts = data.get("history") or [], data.get("attempts") or []
        log_values: dict[str, Any] = {
            "pk": message_id,
            "sk": f"{LOG_SK_PREFIX}{segment:05d}",
            "history": history,
            "attempts": attempts,
        }
        # As long as the request item, and never before the message itself.
        expiries = [data.get("aux_expires_at"), data.get("expires_at")]
        expiries = [int(value) for value in expiries if value is not None]
        if expiries:
            log_values["expires_at"] = max(expiries) + 1
        cuts = [f"#history[{n}]" for n in range(len(history))]
        cuts += [f"#attempts[{n}]" for n in range(len(attempts))]
        condition = "size(#history) = :h AND size(#attempts) = :a AND "
        condition += (
            "attribute_not_exists(log_segments)" if segment == 1 else "log_segments = :prev"
        )
        values: dict[str, Any] = {":h": len(history), ":a": len(attempts), ":segment": segment}
        if segment > 1:
            values[":prev"] = segment - 1
        try:
            aws.call(
                "dynamodb",
                "transact_write_items",
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self._table.name,
                            "Item": serialize(log_values),
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                    {
                        "Update": {
                            "TableName": self._table.name,
                            "Key": message_key(message_id),
                            "UpdateExpression": "SET log_segments = :segment REMOVE "
                            + ", ".join(cuts),
                            "ConditionExpression": condition,
                            "ExpressionAttributeNames": {
                                "#history": "history",
                                "#attempts": "attempts",
                            },
                            "ExpressionAttributeValues": serialize(values),
                        }
                    },
                ],
            )
        except (aws.ConditionFailed, aws.AWSUnavailable, aws.AWSRefused):
            return None  # changed meanwhile, or AWS busy: the log stays until next time
        return segment

    def _extend_aux(self, item: Mapping[str, Any], segments: int | None = None) -> int | None:
        """Give the request and LOG items a later expiry (see `Retention.needs_aux_extension`):
        the rare message that outlives them. `segments`: the LOG items there are, when a move
        just made one that `item` does not count yet. Best effort: the next transition tries
        again. Returns the new expiry, or None when none was written."""
        data = deserialize(item)
        until = self._retention.aux_expiry(self._clock.now())
        if until is None:
            return None
        if data.get("expires_at") is not None:
            until = max(until, int(data["expires_at"]) + 1)
        count = max(int(data.get("log_segments", 0)), segments or 0)
        sort_keys = [f"{LOG_SK_PREFIX}{n:05d}" for n in range(1, count + 1)]
        if data.get("request_apart"):
            sort_keys.append(request_sort_key(data.get("fingerprint", "")))
        try:
            for sort_key in sort_keys:
                self._table.call(
                    "update_item",
                    Key=message_key(data["pk"], sort_key),
                    UpdateExpression="SET expires_at = :until",
                    ConditionExpression="attribute_exists(pk)",
                    ExpressionAttributeValues=serialize({":until": until}),
                )
            self._table.call(
                "update_item",
                Key=message_key(data["pk"]),
                UpdateExpression="SET aux_expires_at = :until",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues=serialize({":until": until}),
            )
        except (aws.ConditionFailed, aws.AWSUnavailable, aws.AWSRefused):
            return None
        return until

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
