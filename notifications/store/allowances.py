"""Fleet-wide allowances: usage counters per fixed time window, shared by every process through
the table (pk = `LIMIT#<name>#<window start>`, sk = `LIMIT`, removed by TTL after the window).

`take` hands out part of a window's limit with one conditional UpdateItem: the ADD happens only
while what has been taken, plus what is asked for, stays within the limit, so concurrent
processes can never take more than the limit between them.
"""

from __future__ import annotations

from notifications import aws
from notifications.store.items import deserialize, serialize
from notifications.store.table import Table

LIMIT_SK = "LIMIT"
# Window items outlive their window by this much before TTL removes them.
EXPIRY_MARGIN_SECONDS = 3600


class Allowances:
    def __init__(self, table: Table) -> None:
        self._table = table

    def take(
        self, *, name: str, window_start: int, window_seconds: int, limit: int, want: int
    ) -> int:
        """Take up to `want` units of `limit` in the window starting at `window_start` (epoch
        seconds). Returns how many were granted: `want`, what was left if less, or 0."""
        while want > 0:
            try:
                self._table.call(
                    "update_item",
                    Key=serialize({"pk": f"LIMIT#{name}#{window_start}", "sk": LIMIT_SK}),
                    UpdateExpression="ADD used :want SET expires_at = :expires",
                    # Only while the window has room for all of `want`: two processes racing for
                    # the last units cannot both get them.
                    ConditionExpression="attribute_not_exists(used) OR used <= :room",
                    ExpressionAttributeValues=serialize(
                        {
                            ":want": want,
                            ":room": limit - want,
                            ":expires": window_start + window_seconds + EXPIRY_MARGIN_SECONDS,
                        }
                    ),
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
                return want
            except aws.ConditionFailed as failure:
                used = int(deserialize(failure.item).get("used", limit)) if failure.item else limit
                # The condition failed, so what is left is less than `want`: ask for that (the
                # loop ends when nothing is left; each round asks for less).
                want = limit - used
        return 0
