"""Dashboard statistics kept in the table: counts per status, the latest failures, failures per
target host per hour.

The operator dashboard shows counts per status, the latest failures and the target hosts that
failed most over the last 24 hours. DynamoDB has no cheap way to compute those from the messages
themselves: a COUNT query reads (and bills) every index item it counts, about
items x 1.5 KB / 4 KB x 0.5 RCU, so ~1,900 RCU for 10,000 messages and ~1.9 million RCU (minutes of
1 MB pages) for 10 million, and COMPLETED only ever grows. (On the embedded stand-in it is worse:
every index query walks the whole table, ~0.1 s per query at 10,000 messages, and the dashboard
would need 40 of them.)

So the store keeps small aggregate items up to date after each successful message write (the only
two writes that set a status: `put_new` and `transition`):
  STATS#COUNTS#<shard>               one number per status
  STATS#FAILED#<UTC hour>#<shard>    failures per target host in that hour (ADD +1), and the
                                     attempts started in it, delivered and failed (the chart)
  STATS#RECENT#<shard>               the shard's last RECENT_FAILURE_SLOTS failures (a ring)

Counts are written behind (`PendingCounts`): each process sums its status changes in memory
(PENDING +1; PENDING -1, QUEUED +1; ...) and writes the sum as one UpdateItem a second
(STATS_FLUSH_SECONDS) to a random one of the 8 COUNTS items, which spreads the writes; a reader
adds the 8 up. That is one write a second per process however many messages move, instead of one
per status change, which was about 30% of all AWS calls per delivered message. Attempts per hour (from every transition that records an attempt) are summed
the same way and written every ten seconds, to a random shard of the hour's item. A failure is still
counted at once, in the same UpdateItem that numbers it for the recent-failures ring (two more
writes record it): failures are rare and operators look for them first.

The aggregates are updated after, not atomically with, the message write: a transaction would
double the cost of every status change and make concurrent status changes conflict on the shared
counter items. A write that fails is retried with the next one (so a write that timed out but was
applied counts its second twice); a process killed without exiting loses at most a second of count
changes, and a fault between a failure's writes loses one count (logged). `recount` (command
`recount_statuses`) repairs the counts; the failure items are windowed and heal by themselves.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from notifications import aws
from notifications.domain import (
    Attempt,
    DeliveryStatistics,
    FailureNote,
    HourlyAttempts,
    Message,
    Status,
    format_timestamp,
    parse_timestamp,
)
from notifications.store.items import deserialize, index_shards, serialize, shard_of
from notifications.store.pending import PendingCounts
from notifications.store.table import Table

logger = logging.getLogger(__name__)

STATS_SK = "STATS"
# Failures kept per shard for "the most recent failures" (the newest N overall are always among
# the newest N of each shard).
RECENT_FAILURE_SLOTS = 10
# Hourly failure items expire (DynamoDB TTL on `expires_at`) well after the window they serve.
FAILURE_LOG_RETENTION = timedelta(hours=48)


def format_hour(moment: datetime) -> str:
    """The UTC hour bucket of a moment, as the prefix of its timestamp: `2026-11-25T14`."""
    return format_timestamp(moment)[:13]


def parse_hour(text: str) -> datetime:
    return parse_timestamp(f"{text}:00:00.000000Z")


def _key(pk: str) -> dict[str, Any]:
    return serialize({"pk": pk, "sk": STATS_SK})


class StatusStatistics:
    """Keeps and reads the aggregates. `count_shard(status, shard)` counts one index partition
    exactly (for `recount`)."""

    def __init__(
        self,
        table: Table,
        *,
        flush_seconds: float,
        count_shard: Callable[[Status, int], int],
    ) -> None:
        self._table = table
        self._count_shard = count_shard
        self.pending_counts = PendingCounts(
            self._add_to_counts, flush_seconds, write_attempts=self._add_attempts
        )

    def record_arrival(self, message: Message, previous: Status | None) -> None:
        """Count a message that just entered `message.status` (best effort, never raises)."""
        if message.status != Status.FAILED:
            self.pending_counts.add(message.status, previous)
            return
        shard = shard_of(message.id)
        names = {"#to": message.status.value}
        values: dict[str, Any] = {":one": 1}
        expression = "ADD #to :one, failure_sequence :one"
        if previous is not None:
            names["#from"] = previous.value
            values[":minus_one"] = -1
            expression += ", #from :minus_one"
        try:
            response = self._table.call(
                "update_item",
                Key=_key(f"STATS#COUNTS#{shard}"),
                UpdateExpression=expression,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=serialize(values),
                ReturnValues="UPDATED_NEW",
            )
            sequence = int(deserialize(response["Attributes"])["failure_sequence"])
            self._record_failure(message, shard=shard, sequence=sequence)
        except aws.AWSUnavailable as error:
            logger.warning(
                "statistics not updated for %s (%s -> %s): %s",
                message.id,
                previous,
                message.status,
                error,
            )

    def record_attempt(self, attempt: Attempt) -> None:
        """Count an attempt just stored, in the hour it started (best effort, never raises)."""
        outcome = "delivered" if attempt.outcome == "delivered" else "failed"
        self.pending_counts.add_attempt(attempt.started_at[:13], outcome)

    def _add_attempts(self, counts: dict[tuple[str, str], int]) -> None:
        """One UpdateItem per hour adding attempts, delivered and failed, to a random shard of
        the hour's FAILED item."""
        hours: dict[str, dict[str, int]] = {}
        for (hour, outcome), count in counts.items():
            hours.setdefault(hour, {})[f"attempts_{outcome}"] = count
        for hour, added in hours.items():
            expires = parse_hour(hour) + FAILURE_LOG_RETENTION
            self._table.call(
                "update_item",
                Key=_key(f"STATS#FAILED#{hour}#{random.randrange(index_shards())}"),
                UpdateExpression="ADD "
                + ", ".join(f"{name} :{name}" for name in added)
                + " SET expires_at = :expires",
                ExpressionAttributeValues=serialize(
                    {
                        **{f":{name}": n for name, n in added.items()},
                        ":expires": int(expires.timestamp()),
                    }
                ),
            )

    def _add_to_counts(self, deltas: dict[str, int]) -> None:
        """One UpdateItem adding `deltas` (status -> change) to a random COUNTS item."""
        self._table.call(
            "update_item",
            Key=_key(f"STATS#COUNTS#{random.randrange(index_shards())}"),
            UpdateExpression="ADD " + ", ".join(f"#s{n} :d{n}" for n in range(len(deltas))),
            ExpressionAttributeNames={f"#s{n}": status for n, status in enumerate(deltas)},
            ExpressionAttributeValues=serialize(
                {f":d{n}": change for n, change in enumerate(deltas.values())}
            ),
        )

    def _record_failure(self, message: Message, *, shard: int, sequence: int) -> None:
        failed_at = message.updated_at
        expires = parse_hour(failed_at[:13]) + FAILURE_LOG_RETENTION
        self._table.call(
            "update_item",
            Key=_key(f"STATS#FAILED#{failed_at[:13]}#{shard}"),
            UpdateExpression="ADD #host :one SET expires_at = :expires",
            ExpressionAttributeNames={"#host": f"host:{message.request.host}"},
            ExpressionAttributeValues=serialize({":one": 1, ":expires": int(expires.timestamp())}),
        )
        note = {
            "message_id": message.id,
            "at": failed_at,
            "target_host": message.request.host,
            "producer_id": message.producer_id,
            "error": (message.last_error or "")[:300],
        }
        self._table.call(
            "update_item",
            Key=_key(f"STATS#RECENT#{shard}"),
            UpdateExpression="SET #slot = :note",
            ExpressionAttributeNames={"#slot": f"slot{sequence % RECENT_FAILURE_SLOTS}"},
            ExpressionAttributeValues=serialize({":note": note}),
        )

    def flush(self) -> bool:
        """Write this process's pending count changes now (a worker does so as it stops)."""
        return self.pending_counts.flush()

    def read(self, *, now: datetime, hours: int = 24, recent: int = 10) -> DeliveryStatistics:
        """Counts per status, the `recent` latest failures and failures per target host in the
        last `hours` hours (whole UTC hours: the current one and the `hours` before it).
        This process's own pending count changes are written first."""
        self.pending_counts.flush()
        shards = range(index_shards())
        hour_keys = [format_hour(now - timedelta(hours=back)) for back in range(hours + 1)]
        keys = (
            [f"STATS#COUNTS#{shard}" for shard in shards]
            + [f"STATS#RECENT#{shard}" for shard in shards]
            + [f"STATS#FAILED#{hour}#{shard}" for hour in hour_keys for shard in shards]
        )
        items = self._table.batch_get([{"pk": key, "sk": STATS_SK} for key in keys])
        counts = dict.fromkeys(Status, 0)
        notes: list[FailureNote] = []
        by_host: Counter[str] = Counter()
        delivered: Counter[str] = Counter()
        failed: Counter[str] = Counter()
        for item in items:
            data = deserialize(item)
            kind = data["pk"].split("#")[1]
            if kind == "COUNTS":
                for status in Status:
                    counts[status] += int(data.get(status.value, 0))
            elif kind == "RECENT":
                notes.extend(
                    FailureNote(**value) for name, value in data.items() if name.startswith("slot")
                )
            elif kind == "FAILED":
                hour = data["pk"].split("#")[2]
                delivered[hour] += int(data.get("attempts_delivered", 0))
                failed[hour] += int(data.get("attempts_failed", 0))
                for name, value in data.items():
                    if name.startswith("host:"):
                        by_host[name[len("host:") :]] += int(value)
        notes.sort(key=lambda note: (note.at, note.message_id), reverse=True)
        return DeliveryStatistics(
            counts={status: max(0, count) for status, count in counts.items()},
            recent_failures=notes[:recent],
            failures_by_host=dict(by_host.most_common()),
            attempts_by_hour=[
                HourlyAttempts(hour, delivered[hour], failed[hour]) for hour in reversed(hour_keys)
            ],
        )

    def recount(self) -> dict[Status, int]:
        """Set the status counters to exact COUNT query results (repair after a lost update).
        Reads every index item once. Changes made while it runs can be missed, so run it when
        traffic is low. Returns the new totals."""
        self.pending_counts.flush()
        totals = dict.fromkeys(Status, 0)
        for shard in range(index_shards()):
            counts = {status: self._count_shard(status, shard) for status in Status}
            self._table.call(
                "update_item",
                Key=_key(f"STATS#COUNTS#{shard}"),
                UpdateExpression="SET " + ", ".join(f"#s{n} = :s{n}" for n in range(len(Status))),
                ExpressionAttributeNames={f"#s{n}": s.value for n, s in enumerate(Status)},
                ExpressionAttributeValues=serialize(
                    {f":s{n}": counts[s] for n, s in enumerate(Status)}
                ),
            )
            for status, count in counts.items():
                totals[status] += count
        return totals
