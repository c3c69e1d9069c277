"""What an attempt's result means: delivered, try again later, or give up. One table, no I/O."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime

from notifications.validation import is_decimal


class Verdict(enum.StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    PERMANENT = "permanent"


def parse_status_set(text: str) -> frozenset[int]:
    """'408,429,500-599' -> {408, 429, 500, ..., 599}."""
    codes: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        low, _, high = part.partition("-")
        start, end = int(low), int(high or low)
        if not 100 <= start <= end <= 599:
            raise ValueError(f"not an HTTP status range: {part!r}")
        codes.update(range(start, end + 1))
    return frozenset(codes)


@dataclass(frozen=True)
class OutcomePolicy:
    """2xx is delivered. Statuses in `retryable` and transport errors (timeouts, refused or reset
    connections) are retried. Everything else — 3xx (redirects are not followed), other 4xx
    including 410 — is permanent: repeating the same request would get the same answer."""

    retryable: frozenset[int]

    def verdict(self, status_code: int | None, *, blocked: bool = False) -> Verdict:
        if blocked:  # the address policy refused the target: asking again changes nothing
            return Verdict.PERMANENT
        if status_code is None:  # no HTTP answer at all: transport error
            return Verdict.RETRY
        if 200 <= status_code < 300:
            return Verdict.DELIVERED
        if status_code in self.retryable:
            return Verdict.RETRY
        return Verdict.PERMANENT


RETRY_AFTER_STATUSES = frozenset({429, 503})


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    if is_decimal(value):
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment is None or moment.tzinfo is None:
        return None
    return max(0.0, (moment - now).total_seconds())
