"""What a message costs on AWS's meters: DynamoDB read and write units computed from item sizes by
DynamoDB's documented rules, and SQS billed requests, for whatever the store and the queue do.

moto's `ConsumedCapacity` is not size-based (a 200 KB PutItem reports 1 unit), so `CapacityMeter`
works the units out itself. It knows nothing of Herald's layout: it reads each table's key schema
and secondary indexes from DescribeTable the first time a call names the table, and looks at the
items a call actually touches.

Writes (PutItem, UpdateItem, DeleteItem, BatchWriteItem; TransactWriteItems count twice): the
item's before-image is read with a consistent GetItem just before the call, through a separate
client the meter does not watch, and its after-image comes from the request (PutItem), the answer
(`ReturnValues=ALL_NEW`) or another GetItem just after. The table is billed ceil(max(before, after)
/ 1 KB) units, at least 1; a conditional write whose condition failed is billed for the item as it
is (at least 1) and writes no index. Each global or local secondary index is billed for the
item's *projected image* there (table keys + index keys + projected attributes: ALL, KEYS_ONLY or
INCLUDE): an index key that changed is a delete of the old image and a put of the new one; the
same key with projected attributes changed is ceil(max / 1 KB); nothing projected changed is free;
an item that enters or leaves the index is one put or one delete.

Reads: GetItem ceil(item size / 4 KB) (half if eventually consistent; a projection does not make it
cheaper, and a missing item still costs the minimum); BatchGetItem per key the same way; Query and
Scan ceil(sum of the sizes of the items *evaluated* / 4 KB), filtered-out items included: the
meter repeats the request through its own client without the filter and the projection to see
them (on an index, the items are the index's projected images). TransactGetItems count twice.

SQS: one billed request per call, and every 64 KB chunk of a payload (message bodies and attributes
sent or received) is billed as one request; a batch of up to 10 is one call.

The meter's own reads change what is being timed, so it runs in passes whose CPU figures are not
reported. Writes it watches are serialized (across processes too, with `lock_path`), so a
before-image is never stale: fine on the stand-in, whose DynamoDB is serialized anyway.
"""

from __future__ import annotations

import fcntl
import math
import re
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3

WRITE_UNIT_BYTES = 1024
READ_UNIT_BYTES = 4096
SQS_CHUNK_BYTES = 64 * 1024
TRANSACTION_FACTOR = 2
WRITE_OPERATIONS = frozenset(
    {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
)
READ_OPERATIONS = frozenset({"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"})
CONDITION_FAILED = "ConditionalCheckFailedException"
BATCH_GET_LIMIT = 100
_PLACEHOLDER = re.compile(r"[#:][A-Za-z0-9_]+")


# -- item sizes ----------------------------------------------------------------------------------


def documented_item_size(item: Mapping[str, Any]) -> int:
    """An item's size in attribute-value form, by "Item sizes and formats" in the DynamoDB
    developer guide: names and strings in UTF-8 bytes, binary in bytes, a number about one byte
    per two significant digits plus one, a boolean or null one byte, a list or map 3 bytes plus
    one per element (plus each map key), sets the sum of their elements."""
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


def herald_item_size() -> tuple[Any, str]:
    """Herald's own `item_size` when the store still has it (the store refuses items by it, so
    the two agree), else the documented rules above; and which one it is."""
    try:
        from notifications.store.items import item_size
    except ImportError:
        return documented_item_size, "the bench's own (DynamoDB's documented rules)"
    return item_size, "notifications.store.items.item_size"


def write_units(size: int) -> int:
    return max(1, math.ceil(size / WRITE_UNIT_BYTES))


def read_units(total_size: int, *, consistent: bool) -> float:
    units = max(1, math.ceil(total_size / READ_UNIT_BYTES))
    return float(units) if consistent else units / 2


# -- table shapes from DescribeTable ------------------------------------------------------------


@dataclass(frozen=True)
class IndexShape:
    name: str
    keys: tuple[str, ...]
    projection: str  # ALL, KEYS_ONLY or INCLUDE
    included: frozenset[str] = frozenset()


@dataclass(frozen=True)
class TableShape:
    name: str
    keys: tuple[str, ...]
    indexes: tuple[IndexShape, ...] = field(default=())

    @classmethod
    def from_description(cls, table: Mapping[str, Any]) -> TableShape:
        indexes = [
            IndexShape(
                name=index["IndexName"],
                keys=tuple(key["AttributeName"] for key in index["KeySchema"]),
                projection=index["Projection"]["ProjectionType"],
                included=frozenset(index["Projection"].get("NonKeyAttributes", ())),
            )
            for index in [
                *table.get("GlobalSecondaryIndexes", ()),
                *table.get("LocalSecondaryIndexes", ()),
            ]
        ]
        keys = tuple(key["AttributeName"] for key in table["KeySchema"])
        return cls(table["TableName"], keys, tuple(indexes))

    def key_of(self, item: Mapping[str, Any]) -> dict[str, Any]:
        return {name: item[name] for name in self.keys if name in item}

    def projected(self, item: Mapping[str, Any] | None, index: IndexShape) -> dict | None:
        """The item's image in `index`, or None when the item is not in it (sparse index: an
        item lacking any of the index's key attributes is left out)."""
        if item is None or any(name not in item for name in index.keys):
            return None
        if index.projection == "ALL":
            return dict(item)
        wanted = set(self.keys) | set(index.keys)
        if index.projection == "INCLUDE":
            wanted |= index.included
        return {name: value for name, value in item.items() if name in wanted}


# -- the meter -----------------------------------------------------------------------------------


class WriteLock:
    """Serializes the writes the meter watches, in this process (a lock) and, with `path`, across
    the processes that share the file (flock), so that no other watched write lands between a
    before-image and its write."""

    def __init__(self, path: str | None) -> None:
        self._threads = threading.Lock()
        self._file = open(path, "a+") if path else None  # noqa: SIM115 - held for the meter's life

    def acquire(self) -> None:
        self._threads.acquire()
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_EX)

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
        self._threads.release()


@dataclass
class ItemWrite:
    """One item's part of a write call: its table, its images, and the kind of action."""

    table: str
    key: dict[str, Any]
    action: str  # put, update, delete, check
    item: dict[str, Any] | None = None  # the request's item (put)
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None


class CapacityMeter:
    """Attach to DynamoDB and SQS clients; `snapshot()` gives flat totals that add across
    processes and subtract between snapshots ("wru|<table>|<index or empty>" and "rru|..." units,
    "sqs|<operation>" billed requests, "status_change|<from>→<to>|calls" and "...|wru",
    "failed_writes", "failed_wru", "evaluated|Query", "meter_errors"); `summarize_units` turns
    them into figures per message. With `only_flagged`, only calls made by threads inside
    `counting()` are metered."""

    def __init__(
        self,
        *,
        only_flagged: bool = False,
        lock_path: str | None = None,
        status_attribute: str = "status",
    ) -> None:
        self.only_flagged = only_flagged
        self.status_attribute = status_attribute
        self.item_size, self.item_size_source = herald_item_size()
        self.totals: Counter[str] = Counter()
        self.largest: dict[str, int] = {}
        self._totals_lock = threading.Lock()
        self._write_lock = WriteLock(lock_path)
        self._local = threading.local()
        self._inspectors: dict[tuple[str | None, str], Any] = {}
        self._shapes: dict[str, TableShape] = {}
        self._shapes_lock = threading.Lock()

    # -- wiring ----------------------------------------------------------------------------

    def attach(self, client: Any) -> None:
        service = client.meta.service_model.service_id.hyphenize()
        events = client.meta.events
        if service == "dynamodb":
            inspector = self._inspector(client)
            events.register("before-parameter-build.dynamodb", self._remember_params)
            events.register(
                "before-call.dynamodb", lambda **kw: self._before_dynamodb(inspector, **kw)
            )
            events.register(
                "after-call.dynamodb", lambda **kw: self._after_dynamodb(inspector, **kw)
            )
            events.register("after-call-error.dynamodb", self._after_error)
        elif service == "sqs":
            events.register("before-parameter-build.sqs", self._remember_params)
            events.register("after-call.sqs", self._after_sqs)

    @contextmanager
    def counting(self) -> Iterator[None]:
        self._local.on = True
        try:
            yield
        finally:
            self._local.on = False

    def _wanted(self) -> bool:
        return not self.only_flagged or getattr(self._local, "on", False)

    def _inspector(self, client: Any) -> Any:
        """A client of the same endpoint that the meter does not watch."""
        key = (client.meta.endpoint_url, client.meta.region_name)
        if key not in self._inspectors:
            self._inspectors[key] = boto3.session.Session().client(
                "dynamodb", endpoint_url=key[0], region_name=key[1]
            )
        return self._inspectors[key]

    def _shape(self, inspector: Any, table: str) -> TableShape:
        with self._shapes_lock:
            if table not in self._shapes:
                description = inspector.describe_table(TableName=table)["Table"]
                self._shapes[table] = TableShape.from_description(description)
            return self._shapes[table]

    def _add(self, amounts: Mapping[str, float]) -> None:
        with self._totals_lock:
            self.totals.update(amounts)

    def snapshot(self) -> dict[str, Any]:
        with self._totals_lock:
            return {"totals": dict(self.totals), "largest_item_bytes": dict(self.largest)}

    # -- event handlers (each returns None: a before-call value would replace the call) ------

    def _remember_params(self, params: Mapping[str, Any], context: dict, **_: Any) -> None:
        if self._wanted():
            context["bench_meter_params"] = dict(params)

    def _before_dynamodb(self, inspector: Any, model: Any, context: dict, **_: Any) -> None:
        params = context.get("bench_meter_params")
        if params is None or model.name not in WRITE_OPERATIONS:
            return
        self._write_lock.acquire()
        context["bench_meter_locked"] = True
        try:
            writes = self._planned_writes(inspector, model.name, params)
            for write in writes:
                write.before = self._get(inspector, write.table, write.key)
            context["bench_meter_writes"] = writes
        except Exception:
            self._add({"meter_errors": 1})

    def _after_error(self, context: dict, **_: Any) -> None:
        if context.pop("bench_meter_locked", False):
            self._write_lock.release()

    def _after_dynamodb(
        self,
        inspector: Any,
        http_response: Any,
        parsed: Mapping,
        model: Any,
        context: dict,
        **_: Any,
    ) -> None:
        params = context.get("bench_meter_params")
        try:
            if params is None:
                return
            failed = getattr(http_response, "status_code", 200) >= 300
            if model.name in WRITE_OPERATIONS:
                writes = context.get("bench_meter_writes")
                if writes is not None:
                    self._account_writes(inspector, model.name, params, parsed, writes, failed)
            elif model.name in READ_OPERATIONS and not failed:
                self._account_reads(inspector, model.name, params, parsed)
        except Exception:
            self._add({"meter_errors": 1})
        finally:
            if context.pop("bench_meter_locked", False):
                self._write_lock.release()

    def _after_sqs(self, parsed: Mapping, model: Any, context: dict, **_: Any) -> None:
        params = context.get("bench_meter_params")
        if params is None:
            return
        self._add({f"sqs|{model.name}": sqs_billed_requests(model.name, params, parsed)})

    # -- writes ----------------------------------------------------------------------------

    def _planned_writes(
        self, inspector: Any, operation: str, params: Mapping[str, Any]
    ) -> list[ItemWrite]:
        if operation == "PutItem":
            shape = self._shape(inspector, params["TableName"])
            item = params["Item"]
            return [ItemWrite(shape.name, shape.key_of(item), "put", item=item)]
        if operation == "UpdateItem":
            return [ItemWrite(params["TableName"], dict(params["Key"]), "update")]
        if operation == "DeleteItem":
            return [ItemWrite(params["TableName"], dict(params["Key"]), "delete")]
        if operation == "BatchWriteItem":
            writes = []
            for table, requests in params["RequestItems"].items():
                shape = self._shape(inspector, table)
                for request in requests:
                    if "PutRequest" in request:
                        item = request["PutRequest"]["Item"]
                        writes.append(ItemWrite(table, shape.key_of(item), "put", item=item))
                    else:
                        writes.append(
                            ItemWrite(table, dict(request["DeleteRequest"]["Key"]), "delete")
                        )
            return writes
        writes = []  # TransactWriteItems
        for entry in params["TransactItems"]:
            ((kind, action),) = entry.items()
            table = action["TableName"]
            if kind == "Put":
                shape = self._shape(inspector, table)
                writes.append(ItemWrite(table, shape.key_of(action["Item"]), "put", action["Item"]))
            else:
                name = {"Update": "update", "Delete": "delete", "ConditionCheck": "check"}[kind]
                writes.append(ItemWrite(table, dict(action["Key"]), name))
        return writes

    def _account_writes(
        self,
        inspector: Any,
        operation: str,
        params: Mapping[str, Any],
        parsed: Mapping[str, Any],
        writes: list[ItemWrite],
        failed: bool,
    ) -> None:
        code = parsed.get("Error", {}).get("Code") if failed else None
        amounts: Counter[str] = Counter({f"writes|{operation}": 1})
        factor = TRANSACTION_FACTOR if operation == "TransactWriteItems" else 1
        if failed:
            if code not in (CONDITION_FAILED, "TransactionCanceledException"):
                self._add({f"write_errors|{operation}": 1})
                return
            # The condition failed: the item as it is is billed, no index is written.
            existing = parsed.get("Item")
            for write in writes:
                image = existing if existing is not None and len(writes) == 1 else write.before
                units = write_units(self.item_size(image or {})) * factor
                amounts[f"wru|{write.table}|"] += units
                amounts["failed_writes"] += 1
                amounts["failed_wru"] += units
            self._add(amounts)
            return
        unprocessed = _unprocessed_keys(parsed) if operation == "BatchWriteItem" else set()
        attributes = parsed.get("Attributes")
        call_units = 0.0
        changes = []
        for write in writes:
            if (write.table, _frozen(write.key)) in unprocessed:
                continue
            if write.action == "put":
                write.after = write.item
            elif write.action == "delete":
                write.after = None
            elif write.action == "check":
                write.after = write.before
            elif params.get("ReturnValues") == "ALL_NEW" and attributes is not None:
                write.after = attributes
            else:
                write.after = self._get(inspector, write.table, write.key)
            shape = self._shape(inspector, write.table)
            for target, units in self.item_units(shape, write).items():
                amounts[f"wru|{write.table}|{target}"] += units * factor
                call_units += units * factor
            if write.after is not None:
                size = self.item_size(write.after)
                with self._totals_lock:
                    self.largest[write.table] = max(self.largest.get(write.table, 0), size)
            change = self._status_change(write)
            if change:
                changes.append(change)
        if changes:
            label = changes[0]
            amounts[f"status_change|{label}|calls"] += 1
            amounts[f"status_change|{label}|wru"] += call_units
        self._add(amounts)

    def item_units(self, shape: TableShape, write: ItemWrite) -> dict[str, float]:
        """Write units of one item's write: "" for the table, then each index by name."""
        before, after = write.before, write.after
        if write.action == "check":
            return {"": float(write_units(self.item_size(before or {})))}
        size = max(self.item_size(before or {}), self.item_size(after or {}))
        units = {"": float(write_units(size))}
        for index in shape.indexes:
            old, new = shape.projected(before, index), shape.projected(after, index)
            units[index.name] = float(self._index_units(index, old, new))
        return units

    def _index_units(self, index: IndexShape, old: dict | None, new: dict | None) -> int:
        if old is None and new is None:
            return 0
        if old is None:
            return write_units(self.item_size(new))
        if new is None:
            return write_units(self.item_size(old))
        if any(old.get(name) != new.get(name) for name in index.keys):
            return write_units(self.item_size(old)) + write_units(self.item_size(new))
        if old == new:
            return 0
        return write_units(max(self.item_size(old), self.item_size(new)))

    def _status_change(self, write: ItemWrite) -> str | None:
        if write.before is None or write.after is None:
            return None
        old = write.before.get(self.status_attribute)
        new = write.after.get(self.status_attribute)
        if old == new:
            return None
        return f"{_text(old)}→{_text(new)}"

    def _get(self, inspector: Any, table: str, key: Mapping[str, Any]) -> dict | None:
        response = inspector.get_item(TableName=table, Key=dict(key), ConsistentRead=True)
        return response.get("Item")

    # -- reads -----------------------------------------------------------------------------

    def _account_reads(
        self, inspector: Any, operation: str, params: Mapping[str, Any], parsed: Mapping
    ) -> None:
        amounts: Counter[str] = Counter({f"reads|{operation}": 1})
        if operation == "GetItem":
            item = parsed.get("Item")
            if item is not None and _projects(params):
                item = self._get(inspector, params["TableName"], params["Key"])
            size = self.item_size(item or {})
            consistent = bool(params.get("ConsistentRead"))
            amounts[f"rru|{params['TableName']}|"] += read_units(size, consistent=consistent)
        elif operation == "BatchGetItem":
            unprocessed = parsed.get("UnprocessedKeys") or {}
            for table, request in params["RequestItems"].items():
                amounts.update(
                    self._batch_get_units(inspector, table, request, parsed, unprocessed)
                )
        elif operation == "TransactGetItems":
            for entry in params["TransactItems"]:
                get = entry["Get"]
                item = self._get(inspector, get["TableName"], get["Key"])
                units = read_units(self.item_size(item or {}), consistent=True)
                amounts[f"rru|{get['TableName']}|"] += units * TRANSACTION_FACTOR
        else:  # Query, Scan
            evaluated = self._evaluated(inspector, operation, params)
            size = sum(self.item_size(item) for item in evaluated)
            consistent = bool(params.get("ConsistentRead"))
            target = f"rru|{params['TableName']}|{params.get('IndexName', '')}"
            amounts[target] += read_units(size, consistent=consistent)
            amounts[f"evaluated|{operation}"] += len(evaluated)
        self._add(amounts)

    def _batch_get_units(
        self,
        inspector: Any,
        table: str,
        request: Mapping[str, Any],
        parsed: Mapping[str, Any],
        unprocessed: Mapping[str, Any],
    ) -> Counter[str]:
        shape = self._shape(inspector, table)
        skipped = {_frozen(key) for key in unprocessed.get(table, {}).get("Keys", ())}
        items = parsed.get("Responses", {}).get(table, [])
        if items and _projects(request):
            # A projection does not make a read cheaper (and may leave out the key): the whole
            # items of the keys that were read.
            read = [key for key in request["Keys"] if _frozen(key) not in skipped]
            items = self._batch_get(inspector, table, read)
        returned = {_frozen(shape.key_of(item)): item for item in items}
        consistent = bool(request.get("ConsistentRead"))
        amounts: Counter[str] = Counter()
        for key in request["Keys"]:
            frozen = _frozen(key)
            if frozen in skipped:
                continue
            # A key with no item still costs the minimum.
            size = self.item_size(returned.get(frozen) or {})
            amounts[f"rru|{table}|"] += read_units(size, consistent=consistent)
        return amounts

    def _batch_get(self, inspector: Any, table: str, keys: list[dict]) -> list[dict]:
        items: list[dict] = []
        for start in range(0, len(keys), BATCH_GET_LIMIT):
            pending = {
                table: {"Keys": keys[start : start + BATCH_GET_LIMIT], "ConsistentRead": True}
            }
            while pending:
                response = inspector.batch_get_item(RequestItems=pending)
                items.extend(response.get("Responses", {}).get(table, []))
                pending = response.get("UnprocessedKeys") or {}
        return items

    def _evaluated(
        self, inspector: Any, operation: str, params: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        """The items a Query or Scan evaluated: the same request without its filter, projection
        or Select (DynamoDB applies `Limit`, and the 1 MB page, before the filter, so this reads
        the same items)."""
        kept = {
            name: params[name]
            for name in (
                "TableName",
                "IndexName",
                "KeyConditionExpression",
                "KeyConditions",
                "ExclusiveStartKey",
                "Limit",
                "ScanIndexForward",
                "ConsistentRead",
                "Segment",
                "TotalSegments",
            )
            if name in params
        }
        used = set(_PLACEHOLDER.findall(params.get("KeyConditionExpression", "")))
        names = {k: v for k, v in params.get("ExpressionAttributeNames", {}).items() if k in used}
        values = {k: v for k, v in params.get("ExpressionAttributeValues", {}).items() if k in used}
        if names:
            kept["ExpressionAttributeNames"] = names
        if values:
            kept["ExpressionAttributeValues"] = values
        call = inspector.query if operation == "Query" else inspector.scan
        return call(**kept).get("Items", [])


def sqs_billed_requests(operation: str, params: Mapping[str, Any], parsed: Mapping) -> int:
    """Requests SQS bills for one call: one per 64 KB chunk of the payload, at least one."""
    if operation == "SendMessage":
        payload = _sqs_payload(params)
    elif operation == "SendMessageBatch":
        payload = sum(_sqs_payload(entry) for entry in params.get("Entries", ()))
    elif operation == "ReceiveMessage":
        payload = sum(_sqs_payload(message) for message in parsed.get("Messages", ()))
    else:
        payload = 0
    return max(1, math.ceil(payload / SQS_CHUNK_BYTES))


def _sqs_payload(message: Mapping[str, Any]) -> int:
    size = len(str(message.get("MessageBody", message.get("Body", ""))).encode())
    for name, value in (message.get("MessageAttributes") or {}).items():
        size += len(name.encode()) + len(value.get("DataType", "").encode())
        size += len(str(value.get("StringValue", "")).encode())
        size += len(value.get("BinaryValue", b""))
    return size


def _projects(request: Mapping[str, Any]) -> bool:
    return bool(request.get("ProjectionExpression") or request.get("AttributesToGet"))


def _frozen(key: Mapping[str, Any]) -> tuple:
    return tuple(sorted((name, repr(value)) for name, value in key.items()))


def _unprocessed_keys(parsed: Mapping[str, Any]) -> set[tuple[str, tuple]]:
    left = set()
    for table, requests in (parsed.get("UnprocessedItems") or {}).items():
        for request in requests:
            item = request.get("PutRequest", {}).get("Item") or request["DeleteRequest"]["Key"]
            left.add((table, _frozen(item)))
    return left


def _text(value: Mapping[str, Any] | None) -> str:
    if value is None:
        return "none"
    ((_, inner),) = value.items()
    return str(inner)


# -- summaries -----------------------------------------------------------------------------------


def add_totals(*totals: Mapping[str, float]) -> dict[str, float]:
    combined: Counter[str] = Counter()
    for each in totals:
        combined.update(each)
    return dict(combined)


def subtract_totals(after: Mapping[str, float], before: Mapping[str, float]) -> dict[str, float]:
    keys = set(after) | set(before)
    return {key: after.get(key, 0) - before.get(key, 0) for key in sorted(keys)}


def summarize_units(totals: Mapping[str, float], messages: int) -> dict[str, Any]:
    """Per-message figures from a meter's totals (`messages` delivered)."""
    per = 1 / messages if messages else 0.0

    def units(prefix: str) -> dict[str, float]:
        found: dict[str, float] = {}
        for key, value in totals.items():
            kind, _, rest = key.partition("|")
            if kind != prefix or not value:
                continue
            table, _, index = rest.partition("|")
            found[f"{table}/{index}" if index else table] = value * per
        return dict(sorted(found.items()))

    writes = units("wru")
    reads = units("rru")
    sqs = {
        key.split("|", 1)[1]: value * per
        for key, value in sorted(totals.items())
        if key.startswith("sqs|") and value
    }
    transitions: dict[str, dict[str, float]] = {}
    for key, value in totals.items():
        if key.startswith("status_change|"):
            _, label, what = key.split("|")
            transitions.setdefault(label, {"calls": 0.0, "wru": 0.0})[what] += value
    changes = sum(t["calls"] for t in transitions.values())
    change_units = sum(t["wru"] for t in transitions.values())
    return {
        "write_units_per_message": writes,
        "write_units_per_message_total": sum(writes.values()),
        "read_units_per_message": reads,
        "read_units_per_message_total": sum(reads.values()),
        "sqs_billed_requests_per_message": sqs,
        "sqs_billed_requests_per_message_total": sum(sqs.values()),
        "status_change_write_units_per_message": change_units * per,
        "status_changes": {
            "count": changes,
            "write_units_per_change": change_units / changes if changes else None,
            "by_transition": {
                label: {
                    "count": t["calls"],
                    "write_units_per_change": t["wru"] / t["calls"] if t["calls"] else None,
                }
                for label, t in sorted(transitions.items())
            },
        },
        "failed_conditional_writes": totals.get("failed_writes", 0),
        "failed_conditional_write_units": totals.get("failed_wru", 0),
        "items_evaluated_by_queries": totals.get("evaluated|Query", 0)
        + totals.get("evaluated|Scan", 0),
        "meter_errors": totals.get("meter_errors", 0),
        "write_errors": sum(v for k, v in totals.items() if k.startswith("write_errors|")),
    }


def iter_tables(summary: Mapping[str, Any]) -> Iterable[str]:
    """The tables and indexes a summary has units for, table first."""
    names = set(summary["write_units_per_message"]) | set(summary["read_units_per_message"])
    return sorted(names, key=lambda name: (name.split("/")[0], "/" in name, name))
