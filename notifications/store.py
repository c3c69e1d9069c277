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
"""

from __future__ import annotations

import hashlib
import heapq
import json
from collections.abc import Iterable, Mapping
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from notifications import aws
from notifications.domain import (
    Attempt,
    DeliveryRequest,
    HistoryEntry,
    Message,
    Status,
    TransitionConflict,
    check_transition,
)

MESSAGE_SK = "MESSAGE"
ATTEMPT_SK_PREFIX = "ATTEMPT#"
STATUS_INDEX = "status-index"
PRODUCER_INDEX = "producer-index"
# Fixed for the life of a table: changing it would hide items written under the old shard count.
INDEX_SHARDS = 8

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


def _is_condition_failure(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class MessageStore:
    """Messages and attempts in DynamoDB. Methods raise `aws.AWSUnavailable` on AWS faults."""

    def __init__(self, table_name: str | None = None) -> None:
        self.table_name = table_name or settings.DYNAMODB_TABLE

    @property
    def _client(self) -> Any:
        return aws.dynamodb()

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        try:
            return getattr(self._client, operation)(TableName=self.table_name, **kwargs)
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
    ) -> Message:
        """Move a message from `expected` to `target` in one conditional UpdateItem.

        The condition names the expected status so two actors racing on the same message cannot
        both win (a worker claiming while an operator requeues, two workers claiming the same SQS
        delivery). `lease_token` additionally requires the caller to hold the current lease, so a
        worker whose lease expired cannot overwrite the result of the worker that took over.
        `lease_expired_before` requires the lease to have expired before that instant (re-claiming
        a PROCESSING message). `changes` sets other fields; a None value removes the attribute.
        """
        check_transition(expected, target)
        changes = dict(changes or {})
        unknown = set(changes) - MUTABLE_FIELDS
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
        expression = "SET " + ", ".join(assignments)
        if removals:
            expression += " REMOVE " + ", ".join(removals)

        conditions = ["attribute_exists(pk)", "#status = :expected"]
        if lease_token is not None:
            names["#lease"] = "lease_token"
            values[":lease"] = lease_token
            conditions.append("#lease = :lease")
        if lease_expired_before is not None:
            names["#lease_expiry"] = "lease_expires_at"
            values[":lease_deadline"] = lease_expired_before
            conditions.append("#lease_expiry < :lease_deadline")

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
        return _item_to_message(response["Attributes"])

    # -- listings ---------------------------------------------------------------------------

    def list_messages(
        self,
        *,
        status: Status | None = None,
        producer_id: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> tuple[list[Message], str | None]:
        """Messages newest first, optionally of one status and/or one producer.

        `before` is the `gsi_created` key of the last message of the previous page; the second value
        returned is the key to pass for the next page, or None when there is none.
        """
        if producer_id is not None:
            index, key_attr = PRODUCER_INDEX, "gsi_producer"
            partitions = [f"{producer_id}#{n}" for n in range(INDEX_SHARDS)]
            filters = {"status": status.value} if status else {}
        elif status is not None:
            index, key_attr = STATUS_INDEX, "gsi_status"
            partitions = [f"{status.value}#{n}" for n in range(INDEX_SHARDS)]
            filters = {}
        else:
            index, key_attr = STATUS_INDEX, "gsi_status"
            partitions = [f"{s.value}#{n}" for s in Status for n in range(INDEX_SHARDS)]
            filters = {}

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

    def iter_status(self, status: Status, *, page_size: int = 100) -> Iterable[Message]:
        """Every message currently in `status`, newest first (for reconciliation and counts)."""
        before: str | None = None
        while True:
            page, before = self.list_messages(status=status, limit=page_size, before=before)
            yield from page
            if before is None:
                return

    def count_status(self, status: Status) -> int:
        """Exact count of one status: a COUNT query per shard (reads the index, returns no items)."""
        total = 0
        for shard in range(INDEX_SHARDS):
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
                    break
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
    ) -> tuple[list[dict[str, Any]], bool]:
        """Up to `limit` items of one index partition, newest first, strictly older than `before`.
        Returns the items and whether the partition has more."""
        names = {"#key": key_attr}
        values: dict[str, Any] = {":key": key_value}
        condition = "#key = :key"
        if before:
            names["#created"] = "gsi_created"
            values[":before"] = before
            condition += " AND #created < :before"
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
                ScanIndexForward=False,
                Limit=limit,
                **extra,
            )
            items.extend(response.get("Items", []))
            start = response.get("LastEvaluatedKey")
            if not start:
                break
        return items[:limit], bool(start) or len(items) > limit


_stores: dict[str, MessageStore] = {}


def default_store() -> MessageStore:
    """The store for the configured table (one per process and table name)."""
    name = settings.DYNAMODB_TABLE
    if name not in _stores:
        _stores[name] = MessageStore(name)
    return _stores[name]
