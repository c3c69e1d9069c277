"""Producers' intake limits: a rate with a burst per producer, held across every API process.

Each producer may submit `rate x W` messages in each fixed window of W = ceil(burst / rate)
seconds (at least 1), counted in the table (`store.allowances`), so the limit holds however many
API processes there are. A process takes its share of a window in chunks (up to a tenth of the
window's limit, at most 10), one conditional UpdateItem per chunk, and hands out the chunk from
memory: the limit costs one AWS call per chunk, not per submission.

How exact: never more than the window's limit between all processes; across a window boundary a
producer can get up to twice the limit in a short time (a fixed window's usual edge); units a
process took but did not use before the window ended are lost, so under light, spread-out load
a producer can be refused a little before its limit. When the table cannot be reached, the
limit is not enforced (the submission itself then fails or succeeds on its own).
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass

from django.conf import settings

from notifications.aws import AWSUnavailable
from notifications.clock import Clock, system_clock
from notifications.models import Producer
from notifications.store import MessageStore, default_store

logger = logging.getLogger(__name__)

MAX_CHUNK = 10


@dataclass(frozen=True)
class IntakeLimit:
    rate: int  # submissions per second; 0: no limit
    burst: int

    @property
    def window_seconds(self) -> int:
        return max(1, math.ceil(self.burst / self.rate))

    @property
    def per_window(self) -> int:
        return self.rate * self.window_seconds

    @property
    def chunk(self) -> int:
        return max(1, min(MAX_CHUNK, self.per_window // 10))


def intake_limit_for(producer: Producer) -> IntakeLimit:
    """The producer's own limit, or the settings' defaults."""
    rate = producer.intake_rate if producer.intake_rate is not None else settings.INTAKE_RATE
    burst = producer.intake_burst if producer.intake_burst is not None else settings.INTAKE_BURST
    return IntakeLimit(rate=rate, burst=max(burst, rate, 1))


@dataclass
class _Chunk:
    window_start: int
    left: int


class IntakeLimiter:
    """One per process: the chunks it holds, per producer."""

    def __init__(self, *, store: MessageStore | None = None, clock: Clock = system_clock) -> None:
        self._store = store
        self._clock = clock
        self._lock = threading.Lock()
        self._chunks: dict[str, _Chunk] = {}
        # One thread at a time takes a producer's next chunk; the others then use it.
        self._taking: dict[str, threading.Lock] = {}

    def admit(self, *, producer_id: str, limit: IntakeLimit) -> float | None:
        """Count one submission. None when it may go ahead, else the seconds until the
        producer's next window (for Retry-After)."""
        if limit.rate <= 0:
            return None
        now = self._clock.now().timestamp()
        window = limit.window_seconds
        start = int(now // window * window)
        if self._use_chunk(producer_id, start):
            return None
        with self._lock:
            taking = self._taking.setdefault(producer_id, threading.Lock())
        with taking:
            if self._use_chunk(producer_id, start):  # another thread took one meanwhile
                return None
            return self._take_chunk(producer_id, limit, start, now)

    def _use_chunk(self, producer_id: str, window_start: int) -> bool:
        with self._lock:
            chunk = self._chunks.get(producer_id)
            if chunk is not None and chunk.window_start == window_start and chunk.left > 0:
                chunk.left -= 1
                return True
            return False

    def _take_chunk(
        self, producer_id: str, limit: IntakeLimit, start: int, now: float
    ) -> float | None:
        window = limit.window_seconds
        store = self._store or default_store()
        try:
            granted = store.allowances.take(
                name=f"intake:{producer_id}",
                window_start=start,
                window_seconds=window,
                limit=limit.per_window,
                want=limit.chunk,
            )
        except AWSUnavailable as error:
            logger.warning("intake limit of %s not checked: %s", producer_id, error)
            return None
        if granted == 0:
            return max(1.0, start + window - now)
        with self._lock:
            self._chunks[producer_id] = _Chunk(start, granted - 1)
        return None


_limiter = IntakeLimiter()


def producer_intake_admit(
    *, producer: Producer, limiter: IntakeLimiter | None = None
) -> float | None:
    """Count one submission against `producer`'s intake limit: None when it may go ahead, else
    the seconds to wait."""
    return (limiter or _limiter).admit(
        producer_id=producer.public_id, limit=intake_limit_for(producer)
    )
