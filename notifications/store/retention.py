"""How long finished messages are kept: DynamoDB's TTL attribute `expires_at` (epoch seconds)
on every item of a message, so vendor credentials in requests do not stay forever.

A message gets its expiry when it becomes COMPLETED or FAILED (and loses it when an operator
requeues it); an attempt item gets one when it is written, late enough to outlive any retry budget
(`retry_budget_seconds`) plus the retention. TTL deletes items some hours after they expire, so
the store's reads treat an expired message as missing at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Retention:
    retention_seconds: float  # 0: keep forever
    retry_budget_seconds: float

    def message_expiry(self, finished_at: datetime) -> int | None:
        if self.retention_seconds <= 0:
            return None
        return int((finished_at + timedelta(seconds=self.retention_seconds)).timestamp())

    def attempt_expiry(self, started_at: datetime) -> int | None:
        if self.retention_seconds <= 0:
            return None
        keep = timedelta(seconds=self.retention_seconds + self.retry_budget_seconds)
        return int((started_at + keep).timestamp())
