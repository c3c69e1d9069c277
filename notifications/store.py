"""DynamoDB access: the only module that knows keys, indexes and expressions.

Table layout (one table, composite key):
  pk = message id, sk = "MESSAGE"            the message itself (request, status, lease, history)
  pk = message id, sk = "ATTEMPT#00001"      one item per delivery attempt (the attempt log)

Two global secondary indexes serve "newest first" listings. Both are *sharded*: the partition key is
`<status or producer>#<n>` with n = hash(message id) mod INDEX_SHARDS. A plain `status` partition key
would put every write of, say, COMPLETED on one partition value, which caps a real table at roughly
1,000 writes/s for that status and throttles the base table behind it. With 8 shards each status
spreads over 8 partition values (about 8,000 writes/s); a listing reads one page from each shard and
merges them by `gsi_created` (`<created_at>#<id>`, unique and time ordered). Only message items carry
the index attributes, so attempt items never appear in the indexes (sparse).

Every status change is one conditional UpdateItem naming the expected current status; a failed
condition comes back as `TransitionConflict` carrying the item as it is (ALL_OLD).

Statistics for the operator dashboard live in the same table as small aggregate items
(pk = `STATS#...`, sk = `STATS`), kept up to date after each successful message write; see
"statistics" below for why, and what they cost.
"""

from __future__ import annotations

import atexit
import hashlib
import heapq
import json
import logging
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from notifications import aws
from notifications.domain import (
    Attempt,
    DeliveryRequest,
    DeliveryStatistics,
    FailureNote,
    HistoryEntry,
    Message,
    Status,
    TransitionConflict,
    check_transition,
    format_timestamp,
    parse_timestamp,
)

logger = logging.getLogger(__name__)

MESSAGE_SK = "MESSAGE"
ATTEMPT_SK_PREFIX = "ATTEMPT#"
STATUS_INDEX = "status-index"
PRODUCER_INDEX = "producer-index"
# Fixed for the life of a table: changing it would hide items written under the old shard count.
INDEX_SHARDS = 8

STATS_SK = "STATS"
# Failures kept per shard for "the most recent failures" (the newest N overall are always among
# the newest N of each shard).
RECENT_FAILURE_SLOTS = 10
# Hourly failure items expire (DynamoDB TTL on `expires_at`) well after the window they serve.
FAILURE_LOG_RETENTION = timedelta(hours=48)
BATCH_GET_LIMIT = 100

# Fields a transition may change besides status and history.
MUTABLE_FIELDS = frozenset(
    {
        "attempt_count",
        "budget_attempts",
        "budget_started_at",
        "last_error",
        "next_attempt_at",
        "lease_token",
        "lease_expires_at",
    }
)

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


class MessageExists(Exception):
    """PutItem found an item under the same id (an idempotency-key replay or a collision)."""

    def __init__(self, existing: Message) -> None:
        super().__init__(f"message {existing.id} already exists")
        self.existing = existing


def _shard(message_id: str) -> int:
    return int(hashlib.sha256(message_id.encode()).hexdigest()[:8], 16) % INDEX_SHARDS


def _status_key(status: Status, message_id: str) -> str:
    return f"{status.value}#{_shard(message_id)}"


def _serialize(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _serializer.serialize(value) for key, value in values.items()}


def _deserialize(item: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _deserializer.deserialize(value) for key, value in item.items()}


def _message_to_item(message: Message) -> dict[str, Any]:
    request = message.request
    values: dict[str, Any] = {
        "pk": message.id,
        "sk": MESSAGE_SK,
        "producer_id": message.producer_id,
        "status": message.status.value,
        "gsi_status": _status_key(message.status, message.id),
        "gsi_producer": f"{message.producer_id}#{_shard(message.id)}",
        "gsi_created": f"{message.created_at}#{message.id}",
        "created_at": message.created_at,
        "updated_at": message.updated_at,
        "target_url": request.url,
        "target_host": request.host,
        "method": request.method,
        "headers": dict(request.headers),
        "body_is_json": request.body_is_json,
        "metadata_json": json.dumps(message.metadata, separators=(",", ":")),
        "fingerprint": message.fingerprint,
        "attempt_count": message.attempt_count,
        "budget_attempts": message.budget_attempts,
        "budget_started_at": message.budget_started_at,
        "history": [entry.as_dict() for entry in message.history],
    }
    optional = {
        "body": request.body,
        "idempotency_key": message.idempotency_key,
        "last_error": message.last_error,
        "next_attempt_at": message.next_attempt_at,
        "lease_token": message.lease_token,
        "lease_expires_at": message.lease_expires_at,
    }
    values.update({key: value for key, value in optional.items() if value is not None})
    return _serialize(values)


def _item_to_message(item: Mapping[str, Any]) -> Message:
    data = _deserialize(item)
    return Message(
        id=data["pk"],
        producer_id=data["producer_id"],
        status=Status(data["status"]),
        request=DeliveryRequest(
            url=data["target_url"],
            method=data["method"],
            headers=dict(data.get("headers") or {}),
            body=data.get("body"),
            body_is_json=bool(data.get("body_is_json")),
        ),
        created_at=data["created_at"],
        updated_at=data["updated_at"],
        metadata=json.loads(data.get("metadata_json") or "{}"),
        idempotency_key=data.get("idempotency_key"),
        fingerprint=data.get("fingerprint", ""),
        attempt_count=int(data.get("attempt_count", 0)),
        budget_attempts=int(data.get("budget_attempts", 0)),
        budget_started_at=data.get("budget_started_at", ""),
        last_error=data.get("last_error"),
        next_attempt_at=data.get("next_attempt_at"),
        lease_token=data.get("lease_token"),
        lease_expires_at=data.get("lease_expires_at"),
        history=tuple(HistoryEntry.from_dict(entry) for entry in data.get("history") or ()),
    )


def _attempt_to_item(message_id: str, attempt: Attempt) -> dict[str, Any]:
    values: dict[str, Any] = {
        "pk": message_id,
        "sk": f"{ATTEMPT_SK_PREFIX}{attempt.number:05d}",
        "number": attempt.number,
        "started_at": attempt.started_at,
        "duration_ms": attempt.duration_ms,
        "outcome": attempt.outcome,
        "worker": attempt.worker,
        "response_headers": dict(attempt.response_headers),
        "response_snippet": attempt.response_snippet,
    }
    if attempt.status_code is not None:
        values["status_code"] = attempt.status_code
    if attempt.error is not None:
        values["error"] = attempt.error
    return _serialize(values)


def _item_to_attempt(item: Mapping[str, Any]) -> Attempt:
    data = _deserialize(item)
    status_code = data.get("status_code")
    return Attempt(
        number=int(data["number"]),
        started_at=data["started_at"],
        duration_ms=int(data["duration_ms"]),
        outcome=data["outcome"],
        worker=data.get("worker", ""),
        status_code=int(status_code) if status_code is not None else None,
        error=data.get("error"),
        response_headers=dict(data.get("response_headers") or {}),
        response_snippet=data.get("response_snippet", ""),
    )


def format_hour(moment: datetime) -> str:
    """The UTC hour bucket of a moment, as the prefix of its timestamp: `2026-11-25T14`."""
    return format_timestamp(moment)[:13]


def parse_hour(text: str) -> datetime:
    return parse_timestamp(f"{text}:00:00.000000Z")


def _is_condition_failure(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class PendingCounts:
    """Status-count changes not yet written to the table: summed in memory and written as one
    UpdateItem every `interval` seconds by a background thread, before every statistics read,
    and at exit. With `interval` 0 every change is written at once.

    A change whose write fails stays pending for the next write. Changes still pending when the
    process dies without exiting (kill -9, power loss) are lost: the counts are then off by at
    most an interval's worth of changes until `recount_status_counters` repairs them."""

    def __init__(self, write: Callable[[dict[str, int]], None], interval: float) -> None:
        self._write = write
        self.interval = interval
        self._deltas: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._flusher_pid: int | None = None
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        """A forked child starts empty: its parent writes what it had pending, and a lock the
        parent held at the fork must not stay held in the child."""
        self._deltas = Counter()
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._flusher_pid = None

    def add(self, to: Status, previous: Status | None) -> None:
        with self._lock:
            self._deltas[to.value] += 1
            if previous is not None:
                self._deltas[previous.value] -= 1
            start = self.interval > 0 and self._flusher_pid != os.getpid()
            if start:  # first change in this process (a forked child starts its own)
                self._flusher_pid = os.getpid()
        if self.interval <= 0:
            self.flush()
        elif start:
            threading.Thread(target=self._run, name="status-counts", daemon=True).start()
            atexit.register(self.flush)

    def flush(self) -> bool:
        """Write what is pending; False if the write failed (the changes stay pending)."""
        with self._flushing:
            with self._lock:
                deltas = {name: change for name, change in self._deltas.items() if change}
                self._deltas.clear()
            if not deltas:
                return True
            try:
                self._write(deltas)
            except aws.AWSUnavailable as error:
                with self._lock:
                    self._deltas.update(deltas)
                logger.warning("status counts not written yet (kept for the next try): %s", error)
                return False
            return True

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            try:
                self.flush()
            except Exception:  # keep counting whatever happened to one write
                logger.exception("status counts: unexpected error while writing")


class MessageStore:
    """Messages and attempts in DynamoDB. Methods raise `aws.AWSUnavailable` on AWS faults."""

    def __init__(
        self, table_name: str | None = None, *, stats_flush_seconds: float | None = None
    ) -> None:
        self.table_name = table_name or settings.DYNAMODB_TABLE
        if stats_flush_seconds is None:
            stats_flush_seconds = settings.STATS_FLUSH_SECONDS
        self.pending_counts = PendingCounts(self._add_to_counts, stats_flush_seconds)

    @property
    def _client(self) -> Any:
        return aws.dynamodb()

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        return self._call_client(operation, TableName=self.table_name, **kwargs)

    def _call_client(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        try:
            return getattr(self._client, operation)(**kwargs)
        except ClientError as error:
            if _is_condition_failure(error):
                raise
            code = error.response.get("Error", {}).get("Code", "Unknown")
            raise aws.AWSUnavailable(f"DynamoDB {operation} failed: {code}") from error
        except BotoCoreError as error:
            raise aws.AWSUnavailable(
                f"DynamoDB {operation} failed: {type(error).__name__}"
            ) from error

    # -- schema -----------------------------------------------------------------------------

    def ensure_table(self) -> bool:
        """Create the table and its indexes unless present. Returns True when it was created."""
        try:
            self._client.describe_table(TableName=self.table_name)
            return False
        except self._client.exceptions.ResourceNotFoundException:
            pass
        index_projection = {"ProjectionType": "ALL"}
        try:
            self._client.create_table(
                TableName=self.table_name,
                BillingMode="PAY_PER_REQUEST",
                AttributeDefinitions=[
                    {"AttributeName": name, "AttributeType": "S"}
                    for name in ("pk", "sk", "gsi_status", "gsi_producer", "gsi_created")
                ],
                KeySchema=[
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                GlobalSecondaryIndexes=[
                    {
                        "IndexName": STATUS_INDEX,
                        "KeySchema": [
                            {"AttributeName": "gsi_status", "KeyType": "HASH"},
                            {"AttributeName": "gsi_created", "KeyType": "RANGE"},
                        ],
                        "Projection": index_projection,
                    },
                    {
                        "IndexName": PRODUCER_INDEX,
                        "KeySchema": [
                            {"AttributeName": "gsi_producer", "KeyType": "HASH"},
                            {"AttributeName": "gsi_created", "KeyType": "RANGE"},
                        ],
                        "Projection": index_projection,
                    },
                ],
            )
        except self._client.exceptions.ResourceInUseException:
            return False  # created concurrently by another bootstrap
        self._client.get_waiter("table_exists").wait(
            TableName=self.table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )
        self._client.update_time_to_live(
            TableName=self.table_name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
        )
        return True

    # -- messages ---------------------------------------------------------------------------

    def put_new(self, message: Message) -> None:
        """Store a new message. The condition makes the id a deduplication key: with an
        idempotency key the id is derived from (producer, key), so concurrent identical requests
        race on this one write and exactly one wins; the losers get `MessageExists`."""
        try:
            self._call(
                "put_item",
                Item=_message_to_item(message),
                ConditionExpression="attribute_not_exists(pk)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            existing = error.response.get("Item")
            if existing:
                raise MessageExists(_item_to_message(existing)) from error
            existing_message = self.get(message.id)
            if existing_message is None:
                raise aws.AWSUnavailable(
                    "DynamoDB PutItem condition failed without item"
                ) from error
            raise MessageExists(existing_message) from error
        self._record_arrival(message, previous=None)

    def get(self, message_id: str) -> Message | None:
        response = self._call(
            "get_item", Key=_serialize({"pk": message_id, "sk": MESSAGE_SK}), ConsistentRead=True
        )
        item = response.get("Item")
        return _item_to_message(item) if item else None

    def get_with_attempts(self, message_id: str) -> tuple[Message | None, list[Attempt]]:
        """The message and its attempt log, in one consistent Query on the partition."""
        items: list[dict[str, Any]] = []
        start: dict[str, Any] | None = None
        while True:
            extra = {"ExclusiveStartKey": start} if start else {}
            response = self._call(
                "query",
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues=_serialize({":pk": message_id}),
                ConsistentRead=True,
                **extra,
            )
            items.extend(response.get("Items", []))
            start = response.get("LastEvaluatedKey")
            if not start:
                break
        message = None
        attempts = []
        for item in items:
            sort_key = item["sk"]["S"]
            if sort_key == MESSAGE_SK:
                message = _item_to_message(item)
            elif sort_key.startswith(ATTEMPT_SK_PREFIX):
                attempts.append(_item_to_attempt(item))
        return message, attempts

    def put_attempt(self, message_id: str, attempt: Attempt) -> None:
        self._call("put_item", Item=_attempt_to_item(message_id, attempt))

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
            ":gsi_status": _status_key(target, message_id),
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
            response = self._call(
                "update_item",
                Key=_serialize({"pk": message_id, "sk": MESSAGE_SK}),
                UpdateExpression=expression,
                ConditionExpression=" AND ".join(conditions),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=_serialize(values),
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            current = error.response.get("Item")
            raise TransitionConflict(
                message_id, expected, _item_to_message(current) if current else None
            ) from error
        updated = _item_to_message(response["Attributes"])
        if target != expected:
            self._record_arrival(updated, previous=expected)
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
            self._call(
                "update_item",
                Key=_serialize({"pk": message_id, "sk": MESSAGE_SK}),
                UpdateExpression="SET #next = :next",
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=_serialize(values),
            )
        except ClientError:
            return False  # changed meanwhile (condition failure; other faults raise AWSUnavailable)
        return True

    # -- listings ---------------------------------------------------------------------------

    @staticmethod
    def position(message: Message) -> str:
        """A message's place in the newest-first listings (what `before` and `after` take)."""
        return f"{message.created_at}#{message.id}"

    @staticmethod
    def _listing(
        status: Status | None, producer_id: str | None, target_host: str | None
    ) -> tuple[str, str, list[str], dict[str, str]]:
        """Index, its key attribute, the partitions to read and the filters for a listing.
        A target host is a filter (it reads and discards other hosts' items: fine for an
        operator's search, not for a hot path)."""
        filters = {"target_host": target_host} if target_host else {}
        if producer_id is not None:
            partitions = [f"{producer_id}#{n}" for n in range(INDEX_SHARDS)]
            if status:
                filters["status"] = status.value
            return PRODUCER_INDEX, "gsi_producer", partitions, filters
        statuses = [status] if status is not None else list(Status)
        partitions = [f"{s.value}#{n}" for s in statuses for n in range(INDEX_SHARDS)]
        return STATUS_INDEX, "gsi_status", partitions, filters

    def list_messages(
        self,
        *,
        status: Status | None = None,
        producer_id: str | None = None,
        target_host: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> tuple[list[Message], str | None]:
        """Messages newest first, optionally of one status, one producer and/or one target host.

        `before` is the `gsi_created` key of the last message of the previous page; the second value
        returned is the key to pass for the next page, or None when there is none.
        """
        index, key_attr, partitions, filters = self._listing(status, producer_id, target_host)
        pages = [
            self._query_newest(index, key_attr, value, limit=limit, before=before, filters=filters)
            for value in partitions
        ]
        any_more = any(more for _, more in pages)
        merged = list(
            heapq.merge(
                *(items for items, _ in pages),
                key=lambda item: item["gsi_created"]["S"],
                reverse=True,
            )
        )
        page = merged[:limit]
        has_more = any_more or len(merged) > limit
        next_before = page[-1]["gsi_created"]["S"] if page and has_more else None
        return [_item_to_message(item) for item in page], next_before

    def list_messages_newer(
        self,
        *,
        status: Status | None = None,
        producer_id: str | None = None,
        target_host: str | None = None,
        limit: int = 50,
        after: str,
    ) -> tuple[list[Message], bool]:
        """The `limit` messages just newer than `after` (a `position`), newest first, and whether
        there are newer ones still: the "newer" direction of cursor pagination."""
        index, key_attr, partitions, filters = self._listing(status, producer_id, target_host)
        pages = [
            self._query_newest(
                index, key_attr, value, limit=limit, before=None, after=after, filters=filters
            )
            for value in partitions
        ]
        merged = list(
            heapq.merge(*(items for items, _ in pages), key=lambda item: item["gsi_created"]["S"])
        )
        has_more = any(more for _, more in pages) or len(merged) > limit
        page = list(reversed(merged[:limit]))
        return [_item_to_message(item) for item in page], has_more

    def iter_status(self, status: Status, *, page_size: int = 100) -> Iterable[Message]:
        """Every message currently in `status`, newest first (for reconciliation and counts)."""
        before: str | None = None
        while True:
            page, before = self.list_messages(status=status, limit=page_size, before=before)
            yield from page
            if before is None:
                return

    def count_status(self, status: Status) -> int:
        """Exact count of one status: a COUNT query per shard (reads the index, returns no items).
        It reads every index item of the status (see "statistics" for the cost); the dashboard
        uses the maintained counters instead."""
        return sum(self._count_shard(status, shard) for shard in range(INDEX_SHARDS))

    def _count_shard(self, status: Status, shard: int) -> int:
        total = 0
        start: dict[str, Any] | None = None
        while True:
            extra = {"ExclusiveStartKey": start} if start else {}
            response = self._call(
                "query",
                IndexName=STATUS_INDEX,
                KeyConditionExpression="gsi_status = :key",
                ExpressionAttributeValues=_serialize({":key": f"{status.value}#{shard}"}),
                Select="COUNT",
                **extra,
            )
            total += response.get("Count", 0)
            start = response.get("LastEvaluatedKey")
            if not start:
                return total

    def _query_newest(
        self,
        index: str,
        key_attr: str,
        key_value: str,
        *,
        limit: int,
        before: str | None,
        filters: Mapping[str, str],
        after: str | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        """Up to `limit` items of one index partition, newest first, strictly older than `before`
        (or, with `after`, oldest first, strictly newer than `after`).
        Returns the items and whether the partition has more."""
        names = {"#key": key_attr}
        values: dict[str, Any] = {":key": key_value}
        condition = "#key = :key"
        if before:
            names["#created"] = "gsi_created"
            values[":before"] = before
            condition += " AND #created < :before"
        if after:
            names["#created"] = "gsi_created"
            values[":after"] = after
            condition += " AND #created > :after"
        extra: dict[str, Any] = {}
        if filters:
            clauses = []
            for position, (name, value) in enumerate(sorted(filters.items())):
                names[f"#filter{position}"] = name
                values[f":filter{position}"] = value
                clauses.append(f"#filter{position} = :filter{position}")
            extra["FilterExpression"] = " AND ".join(clauses)

        items: list[dict[str, Any]] = []
        start: dict[str, Any] | None = None
        while len(items) < limit:
            if start:
                extra["ExclusiveStartKey"] = start
            response = self._call(
                "query",
                IndexName=index,
                KeyConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=_serialize(values),
                ScanIndexForward=after is not None,
                Limit=limit,
                **extra,
            )
            items.extend(response.get("Items", []))
            start = response.get("LastEvaluatedKey")
            if not start:
                break
        return items[:limit], bool(start) or len(items) > limit

    # -- statistics -------------------------------------------------------------------------
    #
    # The operator dashboard shows counts per status, the latest failures and the target hosts
    # that failed most over the last 24 hours. DynamoDB has no cheap way to compute those from the
    # messages themselves: a COUNT query reads (and bills) every index item it counts, about
    # items x 1.5 KB / 4 KB x 0.5 RCU, so ~1,900 RCU for 10,000 messages and ~1.9 million RCU
    # (minutes of 1 MB pages) for 10 million, and COMPLETED only ever grows. (On the embedded
    # stand-in it is worse: every index query walks the whole table, ~0.1 s per query at 10,000
    # messages, and the dashboard would need 40 of them.)
    #
    # So the store keeps small aggregate items up to date after each successful message write
    # (the only two writes that set a status: `put_new` and `transition`):
    #   STATS#COUNTS#<shard>               one number per status
    #   STATS#FAILED#<UTC hour>#<shard>    failures per target host in that hour (ADD +1)
    #   STATS#RECENT#<shard>               the shard's last RECENT_FAILURE_SLOTS failures (a ring)
    #
    # Counts are written behind (`PendingCounts`): each process sums its status changes in memory
    # (PENDING +1; PENDING -1, QUEUED +1; ...) and writes the sum as one UpdateItem a second
    # (STATS_FLUSH_SECONDS) to a random one of the 8 COUNTS items, which spreads the writes; a
    # reader adds the 8 up. That is one write a second per process however many messages move,
    # instead of one per status change, which was about 30% of all AWS calls per delivered
    # message. A failure is still counted at once, in the same UpdateItem that numbers it for
    # the recent-failures ring (two more writes record it): failures are rare and operators
    # look for them first.
    #
    # The aggregates are updated after, not atomically with, the message write: a transaction would
    # double the cost of every status change and make concurrent status changes conflict on the
    # shared counter items. A write that fails is retried with the next one (so a write that
    # timed out but was applied counts its second twice); a process killed without exiting loses
    # at most a second of count changes, and a fault between a failure's writes loses one count
    # (logged). `recount_status_counters` (command `recount_statuses`)
    # repairs the counts; the failure items are windowed and heal by themselves.

    def _record_arrival(self, message: Message, *, previous: Status | None) -> None:
        """Count a message that just entered `message.status` (best effort, never raises)."""
        if message.status != Status.FAILED:
            self.pending_counts.add(message.status, previous)
            return
        shard = _shard(message.id)
        names = {"#to": message.status.value}
        values: dict[str, Any] = {":one": 1}
        expression = "ADD #to :one, failure_sequence :one"
        if previous is not None:
            names["#from"] = previous.value
            values[":minus_one"] = -1
            expression += ", #from :minus_one"
        try:
            response = self._call(
                "update_item",
                Key=_serialize({"pk": f"STATS#COUNTS#{shard}", "sk": STATS_SK}),
                UpdateExpression=expression,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=_serialize(values),
                ReturnValues="UPDATED_NEW",
            )
            sequence = int(_deserialize(response["Attributes"])["failure_sequence"])
            self._record_failure(message, shard=shard, sequence=sequence)
        except aws.AWSUnavailable as error:
            logger.warning(
                "statistics not updated for %s (%s -> %s): %s",
                message.id,
                previous,
                message.status,
                error,
            )

    def _add_to_counts(self, deltas: dict[str, int]) -> None:
        """One UpdateItem adding `deltas` (status -> change) to a random COUNTS item."""
        names = {f"#s{n}": status for n, status in enumerate(deltas)}
        values = {f":d{n}": change for n, change in enumerate(deltas.values())}
        self._call(
            "update_item",
            Key=_serialize(
                {"pk": f"STATS#COUNTS#{random.randrange(INDEX_SHARDS)}", "sk": STATS_SK}
            ),
            UpdateExpression="ADD " + ", ".join(f"#s{n} :d{n}" for n in range(len(deltas))),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=_serialize(values),
        )

    def flush_statistics(self) -> bool:
        """Write this process's pending count changes now (a worker does so as it stops)."""
        return self.pending_counts.flush()

    def _record_failure(self, message: Message, *, shard: int, sequence: int) -> None:
        failed_at = message.updated_at
        expires = parse_hour(failed_at[:13]) + FAILURE_LOG_RETENTION
        self._call(
            "update_item",
            Key=_serialize({"pk": f"STATS#FAILED#{failed_at[:13]}#{shard}", "sk": STATS_SK}),
            UpdateExpression="ADD #host :one SET expires_at = :expires",
            ExpressionAttributeNames={"#host": f"host:{message.request.host}"},
            ExpressionAttributeValues=_serialize({":one": 1, ":expires": int(expires.timestamp())}),
        )
        note = {
            "message_id": message.id,
            "at": failed_at,
            "target_host": message.request.host,
            "producer_id": message.producer_id,
            "error": (message.last_error or "")[:300],
        }
        self._call(
            "update_item",
            Key=_serialize({"pk": f"STATS#RECENT#{shard}", "sk": STATS_SK}),
            UpdateExpression="SET #slot = :note",
            ExpressionAttributeNames={"#slot": f"slot{sequence % RECENT_FAILURE_SLOTS}"},
            ExpressionAttributeValues=_serialize({":note": note}),
        )

    def statistics(self, *, now: datetime, hours: int = 24, recent: int = 10) -> DeliveryStatistics:
        """Counts per status, the `recent` latest failures and failures per target host in the
        last `hours` hours (whole UTC hours: the current one and the `hours` before it).
        This process's own pending count changes are written first."""
        self.pending_counts.flush()
        shards = range(INDEX_SHARDS)
        hour_keys = [format_hour(now - timedelta(hours=back)) for back in range(hours + 1)]
        keys = (
            [f"STATS#COUNTS#{shard}" for shard in shards]
            + [f"STATS#RECENT#{shard}" for shard in shards]
            + [f"STATS#FAILED#{hour}#{shard}" for hour in hour_keys for shard in shards]
        )
        items = self._batch_get([{"pk": key, "sk": STATS_SK} for key in keys])
        counts = dict.fromkeys(Status, 0)
        notes: list[FailureNote] = []
        by_host: Counter[str] = Counter()
        for item in items:
            data = _deserialize(item)
            kind = data["pk"].split("#")[1]
            if kind == "COUNTS":
                for status in Status:
                    counts[status] += int(data.get(status.value, 0))
            elif kind == "RECENT":
                notes.extend(
                    FailureNote(**value) for name, value in data.items() if name.startswith("slot")
                )
            elif kind == "FAILED":
                for name, value in data.items():
                    if name.startswith("host:"):
                        by_host[name[len("host:") :]] += int(value)
        notes.sort(key=lambda note: (note.at, note.message_id), reverse=True)
        return DeliveryStatistics(
            counts={status: max(0, count) for status, count in counts.items()},
            recent_failures=notes[:recent],
            failures_by_host=dict(by_host.most_common()),
        )

    def recount_status_counters(self) -> dict[Status, int]:
        """Set the status counters to exact COUNT query results (repair after a lost update).
        Costs what `count_status` costs for every status. Changes made while it runs can be
        missed, so run it when traffic is low. Returns the new totals."""
        self.pending_counts.flush()
        totals = dict.fromkeys(Status, 0)
        for shard in range(INDEX_SHARDS):
            counts = {status: self._count_shard(status, shard) for status in Status}
            self._call(
                "update_item",
                Key=_serialize({"pk": f"STATS#COUNTS#{shard}", "sk": STATS_SK}),
                UpdateExpression="SET " + ", ".join(f"#s{n} = :s{n}" for n in range(len(Status))),
                ExpressionAttributeNames={f"#s{n}": s.value for n, s in enumerate(Status)},
                ExpressionAttributeValues=_serialize(
                    {f":s{n}": counts[s] for n, s in enumerate(Status)}
                ),
            )
            for status, count in counts.items():
                totals[status] += count
        return totals

    def get_many(self, message_ids: Iterable[str]) -> list[Message]:
        """The messages that exist among `message_ids` (one BatchGetItem per 100), in no order."""
        keys = [{"pk": message_id, "sk": MESSAGE_SK} for message_id in dict.fromkeys(message_ids)]
        return [_item_to_message(item) for item in self._batch_get(keys)]

    def current_statuses(self, message_ids: Iterable[str]) -> dict[str, Status]:
        """The status of each existing message among `message_ids`, reading nothing else."""
        keys = [{"pk": message_id, "sk": MESSAGE_SK} for message_id in dict.fromkeys(message_ids)]
        items = self._batch_get(keys, projection="pk, #status", names={"#status": "status"})
        return {item["pk"]["S"]: Status(item["status"]["S"]) for item in items}

    def _batch_get(
        self,
        keys: list[dict[str, str]],
        *,
        projection: str | None = None,
        names: Mapping[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        """BatchGetItem in chunks of 100, retrying unprocessed keys (eventually consistent)."""
        items: list[dict[str, Any]] = []
        extra: dict[str, Any] = {}
        if projection:
            extra["ProjectionExpression"] = projection
        if names:
            extra["ExpressionAttributeNames"] = dict(names)
        for start in range(0, len(keys), BATCH_GET_LIMIT):
            pending: dict[str, Any] = {
                self.table_name: {
                    "Keys": [_serialize(key) for key in keys[start : start + BATCH_GET_LIMIT]],
                    **extra,
                }
            }
            for _ in range(5):
                response = self._call_client("batch_get_item", RequestItems=pending)
                items.extend(response.get("Responses", {}).get(self.table_name, []))
                pending = response.get("UnprocessedKeys") or {}
                if not pending:
                    break
            if pending:
                raise aws.AWSUnavailable("DynamoDB BatchGetItem left keys unprocessed")
        return items


_stores: dict[str, MessageStore] = {}


def default_store() -> MessageStore:
    """The store for the configured table (one per process and table name)."""
    name = settings.DYNAMODB_TABLE
    if name not in _stores:
        _stores[name] = MessageStore(name)
    return _stores[name]
