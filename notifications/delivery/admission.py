"""Admission control inside one worker: which deliveries may start now.

Two limits keep one bad vendor from holding up everyone else:
- at most `max_per_host` deliveries in flight per target host, so a host that hangs until the
  timeout occupies at most its share of the worker's slots;
- at most `max_retries` in flight for messages that failed before, so a wave of retries can never
  take the slots that first attempts need.

A message that is not admitted waits in the worker's waiting line (see `notifications.worker`)
and starts when a slot for it frees. When the line is full it is deferred: the worker re-sends it
as a new queue message after `defer_seconds` (a new message starts at receive count 0, so waiting
never spends the budget that moves poison messages to the dead-letter queue). The deferral
follows how long the host's deliveries take, so a hanging host's backlog is looked at about once
per timeout instead of spinning.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

MIN_DEFER_SECONDS = 1.0
MAX_DEFER_SECONDS = 60.0


@dataclass(frozen=True)
class Ticket:
    host: str
    retry: bool
    admitted_at: float


class Admission:
    def __init__(
        self,
        *,
        max_per_host: int,
        max_retries: int,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_per_host = max(1, max_per_host)
        self.max_retries = max(1, max_retries)
        self._monotonic = monotonic  # injected, so tests move time instead of sleeping
        self._lock = threading.Lock()
        self._per_host: Counter[str] = Counter()
        self._admitted_at: dict[str, list[float]] = {}
        self._retries = 0
        self._average_seconds: dict[str, float] = {}
        self._starts: dict[str, deque[float]] = {}  # the host's latest admissions

    def try_admit(self, host: str, *, retry: bool) -> Ticket | None:
        with self._lock:
            if self._per_host[host] >= self.max_per_host:
                return None
            if retry and self._retries >= self.max_retries:
                return None
            self._per_host[host] += 1
            self._retries += int(retry)
            ticket = Ticket(host, retry, self._monotonic())
            self._admitted_at.setdefault(host, []).append(ticket.admitted_at)
            self._starts.setdefault(host, deque(maxlen=32)).append(ticket.admitted_at)
            return ticket

    def release(self, ticket: Ticket, *, seconds: float | None = None) -> None:
        with self._lock:
            self._per_host[ticket.host] -= 1
            if self._per_host[ticket.host] <= 0:
                del self._per_host[ticket.host]
            self._retries -= int(ticket.retry)
            started = self._admitted_at.get(ticket.host, [])
            if ticket.admitted_at in started:
                started.remove(ticket.admitted_at)
            if not started:
                self._admitted_at.pop(ticket.host, None)
            if seconds is not None:  # exponentially weighted average of the host's call time
                previous = self._average_seconds.get(ticket.host, seconds)
                self._average_seconds[ticket.host] = 0.7 * previous + 0.3 * seconds

    def defer_seconds(self, host: str, *, ahead: int = 0) -> float:
        """How long a message for a saturated host should wait before it is looked at again:
        the host's typical call time, or, before any call has finished (a host that hangs), how
        long its oldest call in flight has been running; and, with `ahead` messages for the host
        already waiting before it, about when its turn comes at the rate the host's deliveries
        have been starting (so a backlog for one busy host is not re-sent through SQS every
        second)."""
        now = self._monotonic()
        with self._lock:
            typical = self._average_seconds.get(host, 0.0)
            started = self._admitted_at.get(host, [])
            running = now - min(started) if started else 0.0
            starts = self._starts.get(host)
            turn = 0.0
            if ahead and starts and len(starts) >= 2 and now > starts[0]:
                turn = ahead * (now - starts[0]) / len(starts)
        return min(MAX_DEFER_SECONDS, max(MIN_DEFER_SECONDS, typical, running, turn))

    def in_flight(self, host: str) -> int:
        with self._lock:
            return self._per_host[host]
