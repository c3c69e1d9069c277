"""Admission control inside one worker: which deliveries may start now.

Limits that keep one bad vendor or one busy producer from holding up everyone else:
- at most `max_per_host` deliveries in flight per target host, and as many per *site* (the
  registrable domain, from the Public Suffix List: `a.hooks.example.co.uk` -> `example.co.uk`), so
  a host that hangs until the timeout occupies at most its share of the worker's slots, and a
  producer cannot get around that by spreading messages over random subdomains of one domain;
- at most `max_retries` in flight for messages that failed before, so a wave of retries can never
  take the slots that first attempts need;
- at most `max_per_producer` in flight per producer *while another producer is active* (its
  messages were asked about within `producer_active_seconds`): a producer alone may use every
  slot, and a flood from one producer cannot take the slots another producer's traffic needs.

A message that is not admitted waits in the worker's waiting line (see `notifications.worker`)
and starts when a slot for it frees. When the line is full it is deferred: the worker re-sends it
as a new queue message after `defer_seconds` (a new message starts at receive count 0, so waiting
never spends the budget that moves poison messages to the dead-letter queue). The deferral
follows how long the host's deliveries take, so a hanging host's backlog is looked at about once
per timeout instead of spinning.

Limits that hold across every worker (a host's policy: calls in flight and per second, the
circuit breaker, an operator's pause) are the `hosts` guard's (`delivery.host_guard`): a ticket
carries its pass, and `confirm`, `record_call` and `release` pass on to it.

What is remembered of hosts that have nothing in flight (their call times, for deferrals) is
bounded: the least recently used beyond `max_hosts_remembered` are forgotten.
"""

from __future__ import annotations

import ipaddress
import itertools
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from publicsuffixlist import PublicSuffixList

from notifications.delivery.host_guard import HostGuard, HostPass

MIN_DEFER_SECONDS = 1.0
MAX_DEFER_SECONDS = 60.0
MAX_HOSTS_REMEMBERED = 1024

_suffixes = PublicSuffixList()


def site_of(host: str) -> str:
    """The registrable domain of a host name; an address or a bare suffix is its own site."""
    try:
        ipaddress.ip_address(host.strip("[]"))
        return host
    except ValueError:
        return _suffixes.privatesuffix(host.lower()) or host


@dataclass(frozen=True)
class Ticket:
    host: str
    site: str
    producer: str | None
    is_retry: bool
    admitted_at: float
    host_pass: HostPass | None = None


@dataclass
class _HostTimes:
    """What deferrals need of a host: its typical call time and its latest starts."""

    average_seconds: float | None = None
    starts: deque[float] | None = None


class Admission:
    def __init__(
        self,
        *,
        max_per_host: int,
        max_retries: int,
        max_per_producer: int | None = None,
        producer_active_seconds: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
        max_hosts_remembered: int = MAX_HOSTS_REMEMBERED,
        hosts: HostGuard | None = None,
    ) -> None:
        self.max_per_host = max(1, max_per_host)
        self.max_retries = max(1, max_retries)
        self.max_per_producer = max(1, max_per_producer) if max_per_producer else None
        self.producer_active_seconds = producer_active_seconds
        self.max_hosts_remembered = max_hosts_remembered
        self.hosts = hosts
        self._monotonic = monotonic  # injected, so tests move time instead of sleeping
        self._lock = threading.Lock()
        self._per_host: Counter[str] = Counter()
        self._per_site: Counter[str] = Counter()
        self._per_producer: Counter[str] = Counter()
        self._admitted_at: dict[str, list[float]] = {}  # hosts with calls in flight
        self._retries = 0
        self._times: OrderedDict[str, _HostTimes] = OrderedDict()  # least recently used first
        self._producer_seen: OrderedDict[str, float] = OrderedDict()  # least recently seen first

    def try_admit(
        self,
        host: str,
        *,
        is_retry: bool,
        producer: str | None = None,
    ) -> Ticket | None:
        """A ticket when the delivery may start now (release it when the call ends), else None.
        Asking counts as activity of `producer`, admitted or not."""
        site = site_of(host)
        with self._lock:
            now = self._monotonic()
            others_active = producer is not None and self._others_active(producer, now)
            if self._per_host[host] >= self.max_per_host:
                return None
            if self._per_site[site] >= self.max_per_host:
                return None
            if is_retry and self._retries >= self.max_retries:
                return None
            if (
                producer is not None
                and self.max_per_producer is not None
                and others_active
                and self._per_producer[producer] >= self.max_per_producer
            ):
                return None
            host_pass = None
            if self.hosts is not None:
                host_pass = self.hosts.try_admit(host)
                if host_pass is None:
                    return None
            self._per_host[host] += 1
            self._per_site[site] += 1
            if producer is not None:
                self._per_producer[producer] += 1
            self._retries += int(is_retry)
            ticket = Ticket(host, site, producer, is_retry, now, host_pass)
            self._admitted_at.setdefault(host, []).append(ticket.admitted_at)
            times = self._remember(host)
            if times.starts is None:
                times.starts = deque(maxlen=32)
            times.starts.append(ticket.admitted_at)
            return ticket

    def confirm(self, ticket: Ticket) -> bool:
        """Just before the call, the message claimed (on the delivery thread; may read the
        host's state): whether it may still go."""
        return ticket.host_pass is None or self._guard.confirm(ticket.host_pass)

    def record_call(self, ticket: Ticket, *, failed: bool, detail: str) -> None:
        """The call was made: `failed` when the host did not take it (for the circuit)."""
        if ticket.host_pass is not None:
            self._guard.record_call(ticket.host_pass, failed=failed, detail=detail)

    @property
    def _guard(self) -> HostGuard:
        assert self.hosts is not None
        return self.hosts

    def release(self, ticket: Ticket, *, seconds: float | None = None) -> None:
        if ticket.host_pass is not None:
            self._guard.release(ticket.host_pass)
        with self._lock:
            _decrement(self._per_host, ticket.host)
            _decrement(self._per_site, ticket.site)
            if ticket.producer is not None:
                _decrement(self._per_producer, ticket.producer)
            self._retries -= int(ticket.is_retry)
            started = self._admitted_at.get(ticket.host, [])
            if ticket.admitted_at in started:
                started.remove(ticket.admitted_at)
            if not started:
                self._admitted_at.pop(ticket.host, None)
            if seconds is not None:  # exponentially weighted average of the host's call time
                times = self._remember(ticket.host)
                previous = times.average_seconds if times.average_seconds is not None else seconds
                times.average_seconds = 0.7 * previous + 0.3 * seconds

    def _others_active(self, producer: str, now: float) -> bool:
        """Mark `producer` active now; whether another was active within the window. Forgets
        producers inactive for longer. Called with the lock held."""
        self._producer_seen.pop(producer, None)
        horizon = now - self.producer_active_seconds
        while self._producer_seen and next(iter(self._producer_seen.values())) < horizon:
            self._producer_seen.popitem(last=False)
        others = bool(self._producer_seen)
        self._producer_seen[producer] = now
        return others

    def _remember(self, host: str) -> _HostTimes:
        """The host's times, now the most recently used; forgets the least recently used idle
        hosts beyond the bound. Called with the lock held."""
        times = self._times.get(host)
        if times is None:
            times = self._times[host] = _HostTimes()
        self._times.move_to_end(host)
        excess = len(self._times) - self.max_hosts_remembered
        if excess > 0:  # only past the bound: the hot path makes no list
            for old in list(itertools.islice(self._times, excess)):
                if old not in self._admitted_at:
                    del self._times[old]
        return times

    def defer_seconds(self, host: str, *, ahead: int = 0) -> float:
        """How long a message for a saturated host should wait before it is looked at again:
        the host's typical call time, or, before any call has finished (a host that hangs), how
        long its oldest call in flight has been running; and, with `ahead` messages for the host
        already waiting before it, about when its turn comes at the rate the host's deliveries
        have been starting (so a backlog for one busy host is not re-sent through SQS every
        second)."""
        now = self._monotonic()
        with self._lock:
            times = self._times.get(host) or _HostTimes()
            typical = times.average_seconds or 0.0
            started = self._admitted_at.get(host, [])
            running = now - min(started) if started else 0.0
            starts = times.starts
            turn = 0.0
            if ahead and starts and len(starts) >= 2 and now > starts[0]:
                turn = ahead * (now - starts[0]) / len(starts)
        local = min(MAX_DEFER_SECONDS, max(MIN_DEFER_SECONDS, typical, running, turn))
        return max(local, self.hosts.wait_seconds(host)) if self.hosts is not None else local

    def in_flight(self, host: str) -> int:
        with self._lock:
            return self._per_host[host]

    @property
    def hosts_remembered(self) -> int:
        with self._lock:
            return len(self._times)


def _decrement(counter: Counter[str], key: str) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]
