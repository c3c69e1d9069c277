"""Items and keys: how a Message and its Attempts are laid out as DynamoDB items.

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

Text is stored as UTF-8 (JSON without ASCII escapes: `\\ud83d\\ude00` would take 12 bytes for a
4-byte emoji), and `item_size` counts an item as DynamoDB does, so that the store can refuse an
item over DynamoDB's limit before writing it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from notifications.domain import (
    Attempt,
    DeliveryRequest,
    FailureReason,
    HistoryEntry,
    Message,
    Status,
)

MESSAGE_SK = "MESSAGE"
ATTEMPT_SK_PREFIX = "ATTEMPT#"
STATUS_INDEX = "status-index"
PRODUCER_INDEX = "producer-index"
# Fixed for the life of a table: changing it would hide items written under the old shard count.
INDEX_SHARDS = 8

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def shard_of(message_id: str) -> int:
    return int(hashlib.sha256(message_id.encode()).hexdigest()[:8], 16) % INDEX_SHARDS


def status_partition(status: Status, message_id: str) -> str:
    """The status index's partition key value for a message in `status`."""
    return f"{status.value}#{shard_of(message_id)}"


def message_key(message_id: str) -> dict[str, Any]:
    return serialize({"pk": message_id, "sk": MESSAGE_SK})


def position(message: Message) -> str:
    """A message's place in the newest-first listings (`gsi_created`)."""
    return f"{message.created_at}#{message.id}"


def serialize(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _serializer.serialize(value) for key, value in values.items()}


def deserialize(item: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _deserializer.deserialize(value) for key, value in item.items()}


def message_to_item(message: Message) -> dict[str, Any]:
    request = message.request
    values: dict[str, Any] = {
        "pk": message.id,
        "sk": MESSAGE_SK,
        "producer_id": message.producer_id,
        "status": message.status.value,
        "gsi_status": status_partition(message.status, message.id),
        "gsi_producer": f"{message.producer_id}#{shard_of(message.id)}",
        "gsi_created": position(message),
        "created_at": message.created_at,
        "updated_at": message.updated_at,
        "target_url": request.url,
        "target_host": request.host,
        "method": request.method,
        "headers": dict(request.headers),
        "body_is_json": request.body_is_json,
        "metadata_json": json.dumps(message.metadata, separators=(",", ":"), ensure_ascii=False),
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
        "last_error_code": message.last_error_code,
        "next_attempt_at": message.next_attempt_at,
        "lease_token": message.lease_token,
        "lease_expires_at": message.lease_expires_at,
        "expires_at": message.expires_at,
    }
    values.update({key: value for key, value in optional.items() if value is not None})
    return serialize(values)


def item_to_message(item: Mapping[str, Any]) -> Message:
    data = deserialize(item)
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
        last_error_code=_reason(data.get("last_error_code")),
        next_attempt_at=data.get("next_attempt_at"),
        lease_token=data.get("lease_token"),
        lease_expires_at=data.get("lease_expires_at"),
        expires_at=int(data["expires_at"]) if data.get("expires_at") is not None else None,
        history=tuple(HistoryEntry.from_dict(entry) for entry in data.get("history") or ()),
    )


def attempt_to_item(message_id: str, attempt: Attempt, *, expires_at: int | None) -> dict[str, Any]:
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
    if attempt.error_code is not None:
        values["error_code"] = attempt.error_code.value
    if expires_at is not None:
        values["expires_at"] = expires_at
    return serialize(values)


def item_to_attempt(item: Mapping[str, Any]) -> Attempt:
    data = deserialize(item)
    status_code = data.get("status_code")
    return Attempt(
        number=int(data["number"]),
        started_at=data["started_at"],
        duration_ms=int(data["duration_ms"]),
        outcome=data["outcome"],
        worker=data.get("worker", ""),
        status_code=int(status_code) if status_code is not None else None,
        error=data.get("error"),
        error_code=_reason(data.get("error_code")),
        response_headers=dict(data.get("response_headers") or {}),
        response_snippet=data.get("response_snippet", ""),
    )


def _reason(value: str | None) -> FailureReason | None:
    return FailureReason(value) if value else None


def item_size(item: Mapping[str, Any]) -> int:
    """The size DynamoDB counts for an item in attribute-value form: attribute names and values
    in UTF-8 bytes, 1 byte for a boolean or null, about 1 byte per two significant digits plus 1
    for a number, 3 bytes for a list or map plus 1 byte per element (see "DynamoDB item sizes and
    formats" in the DynamoDB developer guide)."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def _value_size(value: Mapping[str, Any]) -> int:
    ((kind, inner),) = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        return _number_size(inner)
    if kind == "B":
        return len(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(1 + _value_size(element) for element in inner)
    if kind == "M":
        return 3 + sum(1 + len(key.encode()) + _value_size(v) for key, v in inner.items())
    if kind == "SS":
        return sum(len(element.encode()) for element in inner)
    if kind == "NS":
        return sum(_number_size(element) for element in inner)
    return sum(len(element) for element in inner)  # BS


def _number_size(text: str) -> int:
    digits = text.lstrip("-").split("e")[0].split("E")[0].replace(".", "").strip("0")
    return (len(digits) + 1) // 2 + 1
