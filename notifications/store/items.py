"""Items and keys: how a Message, its request and its log are laid out as DynamoDB items.

One table, composite key; every item of a message shares its partition (pk = message id):
  sk = "MESSAGE"     the status item: status, lease, schedule, counts, the listing's fields (target
                     URL, method, metadata), and the recent log (history entries and attempts).
                     Every status change rewrites this item only, so its cost does not grow with
                     the request's body.
  sk = "REQUEST#<fingerprint>"  the request's headers and body, written once at intake and never updated. A
                     request of at most INLINE_REQUEST_BYTES stays in the status item instead (one
                     write less at intake, one read less at delivery, under 1 KB more per change).
  sk = "LOG#00001"   older log entries, moved out of the status item in one transaction when its
                     log passes LOG_SPILL_BYTES, so the status item stays small however often a
                     message is retried, held or requeued.

Five global secondary indexes answer the listings, each keyed `<question>#<shard>` and sorted on
`gsi_created` (`<created_at>#<id>`, unique and time ordered); see `schema`. Sharding spreads one
status (or one producer, one host) over `DYNAMODB_INDEX_SHARDS` partition values: a partition key
value takes about 1,000 writes a second, and a listing reads one page from each shard and merges
them. Only status items carry the index attributes (the indexes are sparse).

Text is stored as UTF-8 (JSON without ASCII escapes: `\\ud83d\\ude00` would take 12 bytes for a
4-byte emoji), and `item_size` counts an item as DynamoDB does, so that the store can refuse an
item over DynamoDB's limit before writing it.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from boto3.dynamodb.types import DYNAMODB_CONTEXT, TypeDeserializer, TypeSerializer
from django.conf import settings

from notifications.domain import (
    Attempt,
    DeliveryRequest,
    FailureReason,
    HistoryEntry,
    Message,
    Status,
)

MESSAGE_SK = "MESSAGE"
REQUEST_SK = "REQUEST"
LOG_SK_PREFIX = "LOG#"
STATUS_INDEX = "status-index"
PRODUCER_STATUS_INDEX = "producer-status-index"
PRODUCER_INDEX = "producer-index"
HOST_INDEX = "host-index"
CREATED_INDEX = "created-index"
# A request (headers, body) this small is kept in the status item.
INLINE_REQUEST_BYTES = 512
# The status item's log (history and attempts) is moved to a LOG item past this size.
LOG_SPILL_BYTES = 6 * 1024

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def index_shards() -> int:
    """Partition values per index question (DYNAMODB_INDEX_SHARDS). Fixed for the life of a
    table: items written under another count would be missing from listings."""
    return settings.DYNAMODB_INDEX_SHARDS


def shard_of(message_id: str, shards: int | None = None) -> int:
    return _digest(message_id) % (shards or index_shards())


@functools.lru_cache(maxsize=4096)  # asked about a message several times per status change
def _digest(message_id: str) -> int:
    return int(hashlib.sha256(message_id.encode()).hexdigest()[:8], 16)


def status_partition(status: Status, message_id: str) -> str:
    """The status index's partition key value for a message in `status`."""
    return f"{status.value}#{shard_of(message_id)}"


def producer_status_partition(producer_id: str, status: Status, message_id: str) -> str:
    return f"{producer_id}#{status.value}#{shard_of(message_id)}"


def request_sort_key(fingerprint: str) -> str:
    """The request item's sort key: named after the request's fingerprint, so that a different
    request under a used idempotency key cannot overwrite the one accepted."""
    return f"{REQUEST_SK}#{fingerprint[:32]}"


def message_key(message_id: str, sort_key: str = MESSAGE_SK) -> dict[str, Any]:
    return serialize({"pk": message_id, "sk": sort_key})


def position(message: Message) -> str:
    """A message's place in the newest-first listings (`gsi_created`)."""
    return f"{message.created_at}#{message.id}"


def serialize(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _attribute(value) for key, value in values.items()}


def deserialize(item: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _python(value) for key, value in item.items()}


# boto3's TypeSerializer and TypeDeserializer, with the types Herald stores most taken first by
# exact type: boto3 tries each DynamoDB type in turn with isinstance checks, a few microseconds
# per value on every write and read. Anything else goes to boto3 itself, so the results are its.
def _attribute(value: Any) -> dict[str, Any]:
    kind = type(value)
    if kind is str:
        return {"S": value}
    if kind is bool:
        return {"BOOL": value}
    if kind is int and -_LARGEST_EXACT < value < _LARGEST_EXACT:
        return {"N": str(value)}
    if value is None:
        return {"NULL": True}
    if kind is dict:
        return {"M": {key: _attribute(inner) for key, inner in value.items()}}
    if kind is list:
        return {"L": [_attribute(inner) for inner in value]}
    return _serializer.serialize(value)


def _python(value: Mapping[str, Any]) -> Any:
    ((kind, inner),) = value.items()
    if kind == "S":
        return inner
    if kind == "N":
        return DYNAMODB_CONTEXT.create_decimal(inner)
    if kind == "BOOL":
        return inner
    if kind == "L":
        return [_python(element) for element in inner]
    if kind == "M":
        return {key: _python(element) for key, element in inner.items()}
    return _deserializer.deserialize(value)


_LARGEST_EXACT = 10**38  # DynamoDB numbers carry 38 digits; boto3 refuses an int with more


def _request_fields(request: DeliveryRequest) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "headers": dict(request.headers),
        "body_is_json": request.body_is_json,
    }
    if request.body is not None:
        fields["body"] = request.body
    return fields


def message_to_items(
    message: Message, *, aux_expires_at: int | None
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The status item and, unless the request is small enough to stay inline, the request
    item. `aux_expires_at` is when the request item (and later log items) may go: late enough
    to outlive the message (see `Retention.aux_expiry`)."""
    request = message.request
    values: dict[str, Any] = {
        "pk": message.id,
        "sk": MESSAGE_SK,
        "producer_id": message.producer_id,
        "status": message.status.value,
        "gsi_status": status_partition(message.status, message.id),
        "gsi_producer_status": producer_status_partition(
            message.producer_id, message.status, message.id
        ),
        "gsi_producer": f"{message.producer_id}#{shard_of(message.id)}",
        "gsi_host": f"{request.host}#{shard_of(message.id)}",
        "gsi_all": f"all#{shard_of(message.id)}",
        "gsi_created": position(message),
        "created_at": message.created_at,
        "updated_at": message.updated_at,
        "target_url": request.url,
        "target_host": request.host,
        "method": request.method,
        "metadata_json": json.dumps(message.metadata, separators=(",", ":"), ensure_ascii=False),
        "fingerprint": message.fingerprint,
        "attempt_count": message.attempt_count,
        "budget_attempts": message.budget_attempts,
        "budget_started_at": message.budget_started_at,
        "history": [history_text(entry) for entry in message.history],
        "attempts": [],
    }
    optional = {
        "idempotency_key": message.idempotency_key,
        "last_error": message.last_error,
        "last_error_code": message.last_error_code,
        "next_attempt_at": message.next_attempt_at,
        "lease_token": message.lease_token,
        "lease_expires_at": message.lease_expires_at,
        "expires_at": message.expires_at,
    }
    values.update({key: value for key, value in optional.items() if value is not None})
    if aux_expires_at is not None:  # the request item's, and any LOG item's to come
        values["aux_expires_at"] = aux_expires_at
    fields = _request_fields(request)
    if item_size(serialize(fields)) <= INLINE_REQUEST_BYTES:
        values.update(fields)
        return serialize(values), None
    values["request_apart"] = True
    request_values: dict[str, Any] = {
        "pk": message.id,
        "sk": request_sort_key(message.fingerprint),
        **fields,
    }
    if aux_expires_at is not None:
        request_values["expires_at"] = aux_expires_at
    return serialize(values), serialize(request_values)


def item_to_message(
    item: Mapping[str, Any],
    *,
    request_item: Mapping[str, Any] | None = None,
    log_items: Sequence[Mapping[str, Any]] = (),
) -> Message:
    """A Message from its status item (or a status-index item: what that projects), with the
    request from `request_item` when it is kept apart, and the history of `log_items` (in
    order) before the status item's own. Without the request item, a request kept apart comes
    back with `request_loaded` False: headers and body not read."""
    data = deserialize(item)
    source = deserialize(request_item) if request_item is not None else data
    history = [entry for log in log_items for entry in deserialize(log).get("history") or ()]
    history.extend(data.get("history") or ())
    return Message(
        id=data["pk"],
        producer_id=data["producer_id"],
        status=Status(data["status"]),
        request=DeliveryRequest(
            url=data.get("target_url", ""),
            method=data.get("method", ""),
            headers=dict(source.get("headers") or {}),
            body=source.get("body"),
            body_is_json=bool(source.get("body_is_json")),
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
        history=history_entries(history),
        request_loaded="headers" in source,
        aux_expires_at=int(data["aux_expires_at"]) if data.get("aux_expires_at") else None,
    )


def with_request(message: Message, request_item: Mapping[str, Any]) -> Message:
    """`message` with the headers and body of its request item."""
    fields = deserialize(request_item)
    request = replace(
        message.request,
        headers=dict(fields.get("headers") or {}),
        body=fields.get("body"),
        body_is_json=bool(fields.get("body_is_json")),
    )
    return replace(message, request=request, request_loaded=True)


def history_text(entry: HistoryEntry, *, derived: bool = False) -> str:
    """A history entry as an element of the status item's `history` list: compact JSON text.
    Log entries are stored as text, not as maps, because every status change returns the item
    and botocore parses a map attribute by attribute, in Python: text costs one value each.

    A `derived` entry is written without `from` by a write that accepted more than one status
    (a claim of a PENDING or QUEUED message): its `from` is the `to` of the entry before it,
    which `history_entries` fills in."""
    data = entry.as_dict()
    if derived:
        del data["from"]
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def history_entries(texts: Iterable[str]) -> tuple[HistoryEntry, ...]:
    """History entries from their texts, in order, each derived `from` taken from the entry
    before. Only a read of a status item alone, after its older log moved to LOG items, can
    start with a derived entry; that entry's `from` stays unknown (None)."""
    entries: list[HistoryEntry] = []
    for text in texts:
        data = json.loads(text)
        if "from" not in data:
            data["from"] = entries[-1].to_status.value if entries else None
        entries.append(HistoryEntry.from_dict(data))
    return tuple(entries)


def attempt_record(attempt: Attempt) -> str:
    """An attempt as an element of the status item's `attempts` list: compact JSON text (see
    `history_text`)."""
    values: dict[str, Any] = {
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
    return json.dumps(values, separators=(",", ":"), ensure_ascii=False)


def attempts_of(
    item: Mapping[str, Any], log_items: Sequence[Mapping[str, Any]] = ()
) -> list[Attempt]:
    """The attempt log: the LOG items' attempts (in order), then the status item's."""
    records = [record for log in log_items for record in deserialize(log).get("attempts") or ()]
    records.extend(deserialize(item).get("attempts") or ())
    return [_attempt(json.loads(record)) for record in records]


def _attempt(data: Mapping[str, Any]) -> Attempt:
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


def log_size(item: Mapping[str, Any]) -> int:
    """The bytes the status item's log (history and attempts) takes."""
    return item_size({name: item[name] for name in ("history", "attempts") if name in item})


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


# The Message field of each status item attribute a transition writes (the ones a listing or
# index reads are left out: a transition's result is the message, not its index entries).
_TRANSITION_FIELDS: dict[str, Callable[[Any], Any]] = {
    "status": Status,
    "updated_at": str,
    "history": history_entries,
    "expires_at": int,
    "attempt_count": int,
    "budget_attempts": int,
    "budget_started_at": str,
    "last_error": str,
    "last_error_code": _reason,
    "next_attempt_at": str,
    "lease_token": str,
    "lease_expires_at": str,
}


def updated_message(
    known: Message, written: Mapping[str, Any], removed: Iterable[str] = ()
) -> Message:
    """`known` as a transition left it, from what that transition wrote (its UPDATED_NEW
    attributes) and the attributes it removed: what the caller already holds is not read back.
    Sound only for a write guarded so that nothing else changed the item since `known` was read
    (a status the caller holds: the intake's own PENDING message, a worker's leased claim)."""
    fields: dict[str, Any] = {name: None for name in removed if name in _TRANSITION_FIELDS}
    for name, value in deserialize(written).items():
        convert = _TRANSITION_FIELDS.get(name)
        if convert is not None:
            fields[name] = convert(value)
    return replace(known, **fields)
