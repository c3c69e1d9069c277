"""How long finished messages are kept: DynamoDB's TTL attribute `expires_at` (epoch seconds)
on every item of a message, so vendor credentials in requests do not stay forever.

A message's status item gets its expiry when it becomes COMPLETED or FAILED (and loses it when an
operator requeues it). Its request and log items, never rewritten for a status change, get one
when written, late enough to outlive any retry budget (`retry_budget_seconds`) plus the retention
plus a week; the rare message that lives longer (held for weeks, requeued late) has them extended
by the transition that finds them too close. TTL deletes items some hours after they expire, so
the store's reads treat an expired message as missing at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

AUX_SLACK_SECONDS = 7 * 86400


@dataclass(frozen=True)
class Retention:
    retention_seconds: float  # 0: keep forever
    retry_budget_seconds: float

    def message_expiry(self, finished_at: datetime) -> int | None:
        if self.retention_seconds <= 0:
            return None
        return int((finished_at + timedelta(seconds=self.retention_seconds)).timestamp())

    def aux_expiry(self, now: datetime) -> int | None:
        """When a message's request and log items may go, for a message alive at `now`: after
        any retry budget started now, plus the retention, plus a week's slack so that the store
        extends it rarely (see `needs_aux_extension`)."""
        if self.retention_seconds <= 0:
            return None
        keep = self.retention_seconds + self.retry_budget_seconds + AUX_SLACK_SECONDS
        return int((now + timedelta(seconds=keep)).timestamp())

    def needs_aux_extension(
        self, message_expires_at: int | None, aux_expires_at: int | None, now: datetime
    ) -> bool:
        """Whether the request and log items would go before the message: a finished message
        kept past them, or one still going whose items are within a retention of going."""
        if aux_expires_at is None or self.retention_seconds <= 0:
            return False
        if message_expires_at is not None:
            return message_expires_at > aux_expires_at
        return aux_expires_at < now.timestamp() + self.retention_seconds
