"""Listings across the sharded indexes: newest first (or, for the "newer" direction of cursor
pagination, oldest first and turned around), by status, by producer, optionally filtered.

A listing reads up to `limit` items from each shard partition it needs (one Query page each, more
only when a filter discarded items) and merges them by `gsi_created`. A target host is a filter:
it reads and discards other hosts' items, fine for an operator's search, not for a hot path.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from notifications.domain import Message, Status
from notifications.store.items import (
    INDEX_SHARDS,
    PRODUCER_INDEX,
    STATUS_INDEX,
    item_to_message,
    serialize,
)
from notifications.store.table import Table


@dataclass(frozen=True)
class _Partitions:
    """Which index a listing reads, its key attribute, the partitions, and the filters."""

    index: str
    key_attribute: str
    values: list[str]
    filters: dict[str, str]


def _partitions(
    status: Status | None, producer_id: str | None, target_host: str | None
) -> _Partitions:
    filters = {"target_host": target_host} if target_host else {}
    if producer_id is not None:
        if status:
            filters["status"] = status.value
        values = [f"{producer_id}#{n}" for n in range(INDEX_SHARDS)]
        return _Partitions(PRODUCER_INDEX, "gsi_producer", values, filters)
    statuses = [status] if status is not None else list(Status)
    values = [f"{s.value}#{n}" for s in statuses for n in range(INDEX_SHARDS)]
    return _Partitions(STATUS_INDEX, "gsi_status", values, filters)


def _created(item: Mapping[str, Any]) -> str:
    return item["gsi_created"]["S"]


class MessageListing:
    """`is_live` says whether a message is still to be shown (not past its retention)."""

    def __init__(self, table: Table, *, is_live: Callable[[Message], bool]) -> None:
        self._table = table
        self._is_live = is_live

    def _messages(self, items: Iterable[Mapping[str, Any]]) -> list[Message]:
        messages = (item_to_message(item) for item in items)
        return [message for message in messages if self._is_live(message)]

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

        `before` is the position (`gsi_created`) of the last message of the previous page; the
        second value returned is the position to pass for the next page, or None when there is
        none."""
        page, has_more = self._read(
            _partitions(status, producer_id, target_host),
            limit=limit,
            newest_first=True,
            bound=before,
        )
        next_before = _created(page[-1]) if page and has_more else None
        return self._messages(page), next_before

    def list_messages_newer(
        self,
        *,
        status: Status | None = None,
        producer_id: str | None = None,
        target_host: str | None = None,
        limit: int = 50,
        after: str,
    ) -> tuple[list[Message], bool]:
        """The `limit` messages just newer than `after` (a position), newest first, and whether
        there are newer ones still: the "newer" direction of cursor pagination."""
        page, has_more = self._read(
            _partitions(status, producer_id, target_host),
            limit=limit,
            newest_first=False,
            bound=after,
        )
        return self._messages(reversed(page)), has_more

    def iter_status(self, status: Status, *, page_size: int = 100) -> Iterable[Message]:
        """Every message currently in `status`, newest first (for reconciliation and counts)."""
        before: str | None = None
        while True:
            page, before = self.list_messages(status=status, limit=page_size, before=before)
            yield from page
            if before is None:
                return

    def count_status(self, status: Status) -> int:
        """Exact count of one status: a COUNT query per shard (reads the index, returns no
        items). It reads every index item of the status; the dashboard uses the maintained
        counters instead (see `store.statistics`)."""
        return sum(self.count_shard(status, shard) for shard in range(INDEX_SHARDS))

    def count_shard(self, status: Status, shard: int) -> int:
        pages = self._table.query_pages(
            IndexName=STATUS_INDEX,
            KeyConditionExpression="gsi_status = :key",
            ExpressionAttributeValues=serialize({":key": f"{status.value}#{shard}"}),
            Select="COUNT",
        )
        return sum(response.get("Count", 0) for response in pages)

    def _read(
        self, partitions: _Partitions, *, limit: int, newest_first: bool, bound: str | None
    ) -> tuple[list[dict[str, Any]], bool]:
        """Up to `limit` items across the partitions, in the reading direction, strictly beyond
        `bound`; and whether more remain."""
        reads = [
            self._read_partition(
                partitions, value, limit=limit, newest_first=newest_first, bound=bound
            )
            for value in partitions.values
        ]
        merged = list(
            heapq.merge(*(items for items, _ in reads), key=_created, reverse=newest_first)
        )
        has_more = any(more for _, more in reads) or len(merged) > limit
        return merged[:limit], has_more

    def _read_partition(
        self,
        partitions: _Partitions,
        value: str,
        *,
        limit: int,
        newest_first: bool,
        bound: str | None,
    ) -> tuple[list[dict[str, Any]], bool]:
        """Up to `limit` items of one partition in the reading direction (newest first: older than
        `bound`; oldest first: newer than `bound`), and whether the partition has more."""
        names = {"#key": partitions.key_attribute}
        values: dict[str, Any] = {":key": value}
        condition = "#key = :key"
        if bound:
            names["#created"] = "gsi_created"
            values[":bound"] = bound
            condition += f" AND #created {'<' if newest_first else '>'} :bound"
        query: dict[str, Any] = {}
        if partitions.filters:
            clauses = []
            for position, (name, wanted) in enumerate(sorted(partitions.filters.items())):
                names[f"#filter{position}"] = name
                values[f":filter{position}"] = wanted
                clauses.append(f"#filter{position} = :filter{position}")
            query["FilterExpression"] = " AND ".join(clauses)
        items: list[dict[str, Any]] = []
        more = False
        for response in self._table.query_pages(
            IndexName=partitions.index,
            KeyConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=serialize(values),
            ScanIndexForward=not newest_first,
            Limit=limit,
            **query,
        ):
            items.extend(response.get("Items", []))
            more = "LastEvaluatedKey" in response
            if len(items) >= limit:
                break
        return items[:limit], more or len(items) > limit
