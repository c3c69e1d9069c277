"""When to try again: a schedule of delays with jitter, and the retry budget."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime


def parse_schedule(text: str) -> tuple[float, ...]:
    delays = tuple(float(part) for part in text.split(",") if part.strip())
    if not delays or any(delay < 0 for delay in delays):
        raise ValueError(f"RETRY_SCHEDULE must be non-negative seconds, got {text!r}")
    return delays


@dataclass(frozen=True)
class RetrySchedule:
    delays: tuple[float, ...]
    max_attempts: int
    max_age_seconds: float
    jitter: float = 0.2

    @property
    def max_delay(self) -> float:
        return max(self.delays)

    def delay_after(
        self, attempts: int, *, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        """Delay before the next attempt, after `attempts` attempts in this budget. The schedule's
        last delay repeats. A vendor's Retry-After wins over the schedule, clamped to its maximum."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        base = self.delays[min(max(attempts, 1), len(self.delays)) - 1]
        spread = base * self.jitter
        return max(0.0, base + (rng or random).uniform(-spread, spread))

    def exhausted(self, *, attempts: int, budget_started: datetime, now: datetime) -> bool:
        """True when no further attempt is allowed: `attempts` made, or the budget is too old."""
        age = (now - budget_started).total_seconds()
        return attempts >= self.max_attempts or age >= self.max_age_seconds
