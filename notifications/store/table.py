"""The table as the store's modules talk to it: every request names the table and goes through
`aws.call`; queries page through `LastEvaluatedKey` in one generator; batch reads chunk and retry."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from notifications import aws
from notifications.store.items import serialize

BATCH_GET_LIMIT = 100
BATCH_GET_TRIES = 5
BATCH_WRITE_LIMIT = 25


class Table:
    def __init__(self, name: str) -> None:
        self.name = name

    def call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        """One DynamoDB request on this table (raises aws.ConditionFailed / aws.AWSUnavailable)."""
        return aws.call("dynamodb", operation, TableName=self.name, **kwargs)

    def query_pages(self, **query: Any) -> Iterator[dict[str, Any]]:
        """The responses of a Query, page after page, until DynamoDB says there is no more.
        The caller stops early by not asking for the next page."""
        start: dict[str, Any] | None = None
        while True:
            extra = {"ExclusiveStartKey": start} if start else {}
            response = self.call("query", **query, **extra)
            yield response
            start = response.get("LastEvaluatedKey")
            if not start:
                return

    def query_items(self, **query: Any) -> Iterator[dict[str, Any]]:
        """Every item a Query matches, across pages."""
        for response in self.query_pages(**query):
            yield from response.get("Items", [])

    def batch_get(
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
                self.name: {
                    "Keys": [serialize(key) for key in keys[start : start + BATCH_GET_LIMIT]],
                    **extra,
                }
            }
            for _ in range(BATCH_GET_TRIES):
                response = aws.call("dynamodb", "batch_get_item", RequestItems=pending)
                items.extend(response.get("Responses", {}).get(self.name, []))
                pending = response.get("UnprocessedKeys") or {}
                if not pending:
                    break
            if pending:
                raise aws.AWSUnavailable("DynamoDB BatchGetItem left keys unprocessed")
        return items

    def batch_put(self, items: list[dict[str, Any]]) -> list[bool]:
        """Put `items` (unconditionally) with BatchWriteItem, 25 a call, retrying unprocessed
        ones; returns, for each item, whether it was written. A chunk that AWS refused or left
        unprocessed after BATCH_GET_TRIES is reported unwritten, not raised."""
        written = [False] * len(items)
        for start in range(0, len(items), BATCH_WRITE_LIMIT):
            chunk = items[start : start + BATCH_WRITE_LIMIT]
            pending: dict[str, Any] = {
                self.name: [{"PutRequest": {"Item": item}} for item in chunk]
            }
            try:
                for _ in range(BATCH_GET_TRIES):
                    response = aws.call("dynamodb", "batch_write_item", RequestItems=pending)
                    pending = response.get("UnprocessedItems") or {}
                    if not pending:
                        break
            except aws.AWSUnavailable:
                continue
            left = {
                _identity(request["PutRequest"]["Item"]) for request in pending.get(self.name, [])
            }
            for offset, item in enumerate(chunk):
                written[start + offset] = _identity(item) not in left
        return written


def _identity(item: Mapping[str, Any]) -> tuple[str, str]:
    return item["pk"]["S"], item["sk"]["S"]
