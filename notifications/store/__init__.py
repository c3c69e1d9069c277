"""DynamoDB access: the only package that knows keys, indexes and expressions.

`MessageStore` is the interface the rest of Herald uses. Behind it:
- `items`: keys and (de)serialisation of the status, request and log items, index sharding;
- `schema`: the table definition and its five listing indexes (`ensure_table`);
- `table`: the one call path (every request through `aws.call`), query paging, batch reads;
- `messages`: reads and guarded writes (put, get, get_full, with_request, transition with the
  attempt log riding on it, reschedule);
- `listing`: newest-first listings, one index per question, a page bounded by its size;
- `statistics` (with `pending`): the dashboard's aggregates, kept up to date after each write;
- `retention`: when finished messages expire (DynamoDB TTL);
- `allowances`: fleet-wide usage counters per time window (producers' intake limits, hosts'
  rate limits);
- `hosts`: target hosts' shared state (circuit, pause, shares of an in-flight limit, events).
Methods raise `aws.AWSUnavailable` on AWS faults, and the domain's exceptions (`MessageExists`,
`TransitionConflict`) when a conditional write finds the message otherwise than expected.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings

from notifications import aws
from notifications.clock import Clock, system_clock
from notifications.domain import DeliveryStatistics, Status
from notifications.store import items
from notifications.store.allowances import Allowances
from notifications.store.hosts import HostStates
from notifications.store.items import index_shards
from notifications.store.listing import MessageListing
from notifications.store.messages import MessageRecords
from notifications.store.retention import Retention
from notifications.store.schema import ensure_table
from notifications.store.statistics import RECENT_FAILURE_SLOTS, StatusStatistics
from notifications.store.table import Table

__all__ = ["index_shards", "RECENT_FAILURE_SLOTS", "MessageStore", "default_store"]


class MessageStore(MessageRecords, MessageListing):
    """Messages, attempts, listings and dashboard statistics of one table."""

    def __init__(
        self,
        table_name: str | None = None,
        *,
        stats_flush_seconds: float | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self.table_name = table_name or settings.DYNAMODB_TABLE
        if stats_flush_seconds is None:
            stats_flush_seconds = settings.STATS_FLUSH_SECONDS
        retention = Retention(
            retention_seconds=settings.MESSAGE_RETENTION_DAYS * 86400,
            retry_budget_seconds=settings.RETRY_MAX_AGE,
        )
        table = Table(self.table_name)
        MessageListing.__init__(self, table, is_live=self.is_live)
        self._statistics = StatusStatistics(
            table, flush_seconds=stats_flush_seconds, count_shard=self.count_shard
        )
        MessageRecords.__init__(
            self,
            table,
            on_arrival=self._statistics.record_arrival,
            on_attempt=self._statistics.record_attempt,
            retention=retention,
            clock=clock,
        )
        self.allowances = Allowances(table)
        self.hosts = HostStates(table)

    position = staticmethod(items.position)

    def ensure_table(self) -> bool:
        """Create the table and its indexes unless present. Returns True when it was created."""
        return ensure_table(self.table_name)

    def check_reachable(self) -> None:
        """One quick DescribeTable (readiness); raises AWSUnavailable when the table does not
        answer within READINESS_TIMEOUT."""
        aws.call("dynamodb", "describe_table", probe=True, TableName=self.table_name)

    def statistics(self, *, now: datetime, hours: int = 24, recent: int = 10) -> DeliveryStatistics:
        """See `StatusStatistics.read`."""
        return self._statistics.read(now=now, hours=hours, recent=recent)

    def flush_statistics(self) -> bool:
        """Write this process's pending count changes now (a worker does so as it stops)."""
        return self._statistics.flush()

    def recount_status_counters(self) -> dict[Status, int]:
        """See `StatusStatistics.recount`."""
        return self._statistics.recount()


_stores: dict[str, MessageStore] = {}


def default_store() -> MessageStore:
    """The store for the configured table (one per process and table name)."""
    name = settings.DYNAMODB_TABLE
    if name not in _stores:
        _stores[name] = MessageStore(name)
    return _stores[name]
