"""Listings: newest first (for the "newer" direction of cursor pagination, read oldest first and
turned around), by status, by producer, by producer and status, by target host, or all.

Each question has an index of its own (see `schema`), so a page never filters: it reads one
Query page of at most `limit` keys from each shard partition of that index, merges them by
`gsi_created`, keeps the first `limit`, and reads those status items in one BatchGetItem. A page
therefore costs about `limit x shards` small index items plus `limit` status items, however many
messages the table holds. Rows whose status moved on since the index was written (indexes are
eventually consistent) are left out of a listing by status; a host search combined with a status
or a producer keeps the rows that match, so its pages may come back short (still bounded).

`iter_status` (reconcile, requeue of everything FAILED) reads only the status index, which
projects the fields those decisions need.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from notifications.domain import Message, Status
from notifications.store.items import (
    CREATED_INDEX,
    HOST_INDEX,
    MESSAGE_SK,
    PRODUCER_INDEX,
    PRODUCER_STATUS_INDEX,
    STATUS_INDEX,
    index_shards,
    item_to_message,
    serialize,
)
from notifications.store.schema import INDEX_KEYS
from notifications.store.table import Table


@dataclass(frozen=True)
class _Plan:
    """Which index a listing reads, its partition values, and what rows must match."""

    index: str
    values: list[str]
    status: Status | None
    producer_id: str | None
    target_host: str | None

    def keeps(self, message: Message) -> bool:
        return (
            (self.status is None or message.status == self.status)
            and (self.producer_id is None or message.producer_id == self.producer_id)
            and (self.target_host is None or message.request.host == self.target_host)
        )


def _plan(status: Status | None, producer_id: str | None, target_host: str | None) -> _Plan:
    shards = range(index_shards())
    if target_host:
        index, values = HOST_INDEX, [f"{target_host}#{n}" for n in shards]
    elif producer_id is not None and status is not None:
        index = PRODUCER_STATUS_INDEX
        values = [f"{producer_id}#{status.value}#{n}" for n in shards]
    elif producer_id is not None:
        index, values = PRODUCER_INDEX, [f"{producer_id}#{n}" for n in shards]
    elif status is not None:
        index, values = STATUS_INDEX, [f"{status.value}#{n}" for n in shards]
    else:
        index, values = CREATED_INDEX, [f"all#{n}" for n in shards]
    return _Plan(index, values, status, producer_id, target_host or None)


def _created(item: Mapping[str, Any]) -> str:
    return item["gsi_created"]["S"]


class MessageListing:
    """`is_live` says whether a message is still to be shown (not past its retention)."""

    def __init__(self, table: Table, *, is_live: Callable[[Message], bool]) -> None:
        self._table = table
        self._is_live = is_live

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
        Rows are read from status items: `request_loaded` is False where the request is kept
        apart (a listing shows no headers or body).

        `before` is the position (`gsi_created`) of the last message of the previous page; the
        second value returned is the position to pass for the next page, or None when there is
        none."""
        plan = _plan(status, producer_id, target_host)
        keys, has_more = self._read(plan, limit=limit, newest_first=True, bound=before)
        next_before = _created(keys[-1]) if keys and has_more else None
        return self._rows(plan, keys), next_before

    def browse(
        self,
        *,
        status: Status | None = None,
        producer_id: str | None = None,
        target_host: str | None = None,
        limit: int = 50,
        before: str | None = None,
        after: str | None = None,
    ) -> tuple[list[Message], str | None, str | None]:
        """A page of cursor pagination in either direction: older than `before` (or the newest
        page), or newer than `after`. Returns its rows newest first, the position to pass as
        `before` for the next older page and as `after` for the next newer one (None: there is
        none). Both come from the index keys the page read, not from its rows, so a page whose
        rows were all left out (their status moved on; a host search with a status) still
        leads on in both directions."""
        plan = _plan(status, producer_id, target_host)
        if after is not None:
            keys, has_more = self._read(plan, limit=limit, newest_first=False, bound=after)
            keys.reverse()  # newest first
            older = _created(keys[-1]) if keys else None
            newer = _created(keys[0]) if keys and has_more else None
        else:
            keys, has_more = self._read(plan, limit=limit, newest_first=True, bound=before)
            older = _created(keys[-1]) if keys and has_more else None
            newer = _created(keys[0]) if keys and before else None
        return self._rows(plan, keys), older, newer

    def iter_status(self, status: Status) -> Iterable[Message]:
        """Every message currently in `status`, in no particular order, from the status index
        alone: each comes with the fields the index projects (`schema.STATUS_INDEX_FIELDS`:
        producer, target, created/updated, attempt count, next attempt, lease expiry), not the
        request, history or errors. For decisions that then act through a guarded transition."""
        for shard in range(index_shards()):
            for item in self._table.query_items(
                IndexName=STATUS_INDEX,
                KeyConditionExpression="gsi_status = :key",
                ExpressionAttributeValues=serialize({":key": f"{status.value}#{shard}"}),
            ):
                message = item_to_message(item)
                if message.status == status and self._is_live(message):
                    yield message

    def count_status(self, status: Status) -> int:
        """Exact count of one status: a COUNT query per shard (reads the index, returns no
        items). It reads every index item of the status; the dashboard uses the maintained
        counters instead (see `store.statistics`)."""
        return sum(self.count_shard(status, shard) for shard in range(index_shards()))

    def count_shard(self, status: Status, shard: int) -> int:
        pages = self._table.query_pages(
            IndexName=STATUS_INDEX,
            KeyConditionExpression="gsi_status = :key",
            ExpressionAttributeValues=serialize({":key": f"{status.value}#{shard}"}),
            Select="COUNT",
        )
        return sum(response.get("Count", 0) for response in pages)

    def _rows(self, plan: _Plan, keys: list[dict[str, Any]]) -> list[Message]:
        """The page's messages in the order of `keys`, from one BatchGetItem of their status
        items; rows that no longer match the listing, or are past retention, left out."""
        if not keys:
            return []
        ids = [key["pk"]["S"] for key in keys]
        found = {
            item["pk"]["S"]: item
            for item in self._table.batch_get([{"pk": id_, "sk": MESSAGE_SK} for id_ in ids])
        }
        rows = (item_to_message(found[id_]) for id_ in ids if id_ in found)
        return [message for message in rows if plan.keeps(message) and self._is_live(message)]

    def _read(
        self, plan: _Plan, *, limit: int, newest_first: bool, bound: str | None
    ) -> tuple[list[dict[str, Any]], bool]:
        """Up to `limit` index keys across the partitions, in the reading direction, strictly
        beyond `bound`; and whether more remain. One Query per partition."""
        reads = [
            self._read_partition(plan, value, limit=limit, newest_first=newest_first, bound=bound)
            for value in plan.values
        ]
        merged = list(
            heapq.merge(*(items for items, _ in reads), key=_created, reverse=newest_first)
        )
        has_more = any(more for _, more in reads) or len(merged) > limit
        return merged[:limit], has_more

    def _read_partition(
        self, plan: _Plan, value: str, *, limit: int, newest_first: bool, bound: str | None
    ) -> tuple[list[dict[str, Any]], bool]:
        """Up to `limit` keys of one partition in the reading direction (newest first: older than
        `bound`; oldest first: newer than `bound`), and whether the partition has more."""
        names = {"#key": INDEX_KEYS[plan.index]}
        values: dict[str, Any] = {":key": value}
        condition = "#key = :key"
        if bound:
            names["#created"] = "gsi_created"
            values[":bound"] = bound
            condition += f" AND #created {'<' if newest_first else '>'} :bound"
        response = self._table.call(
            "query",
            IndexName=plan.index,
            KeyConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=serialize(values),
            ScanIndexForward=not newest_first,
            Limit=limit,
        )
        return response.get("Items", []), "LastEvaluatedKey" in response
