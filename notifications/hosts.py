"""Target hosts' protection, as data and rules: a host's limits, its shared state (circuit,
pause, the workers' shares of its in-flight limit), and what that state allows. Pure Python, no
I/O: the table keeps the state (`store.hosts`), each worker decides with it (`delivery.host_guard`),
and operators change it (`services.hosts`).

The circuit, per target host and shared by every worker:

    CLOSED --(failure_threshold consecutive failed calls)--> OPEN
    OPEN --(cool-off over; one worker takes the probe)--> HALF_OPEN
    HALF_OPEN --(the probe call succeeds)--> CLOSED
    HALF_OPEN --(the probe call fails)--> OPEN, with twice the cool-off (at most the maximum)

A failed call is one the outcome policy retries (timeouts, connection errors, 408, 425, 429,
5xx): the host did not take it. Any other answer, 4xx included, shows the host is there and
counts as a success. A pause is the operator's, beside the circuit: while it lasts (until it is
resumed, or until its end time) nothing is sent, whatever the circuit says.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass, field
from datetime import datetime

from notifications.domain import format_timestamp

MAX_HOST_LENGTH = 253
_HOST = re.compile(r"[a-z0-9._:-]+")  # host names, IPv4 and (unbracketed) IPv6 literals


class InvalidHost(ValueError):
    """Not a host name Herald could have taken from a target URL."""


def normalize_host(text: str) -> str:
    """A host as messages name it (`DeliveryRequest.host`): lower case, an IPv6 literal without
    brackets. Raises InvalidHost for anything else (a URL, a port, spaces)."""
    host = text.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or len(host) > MAX_HOST_LENGTH or not _HOST.fullmatch(host):
        raise InvalidHost(f"{text[:80]!r} is not a host name (give it without scheme or port)")
    return host


class Circuit(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Transition(enum.StrEnum):
    """What happened to a host, as its events and the metrics name it."""

    OPENED = "opened"  # closed -> open: the failure threshold was reached
    HALF_OPENED = "half_opened"  # open -> half-open: one probe call let through
    CLOSED = "closed"  # half-open -> closed: the probe succeeded
    REOPENED = "reopened"  # half-open -> open: the probe failed; a longer cool-off
    CLOSED_BY_OPERATOR = "closed_by_operator"  # open or half-open -> closed by hand
    PAUSED = "paused"
    RESUMED = "resumed"


@dataclass(frozen=True)
class HostLimits:
    """What a host may take: its policy's values, or the settings' defaults. 0 means no limit
    (and, for the threshold, no circuit breaking)."""

    max_in_flight: int = 0
    max_per_second: int = 0
    failure_threshold: int = 0
    cool_off_seconds: float = 30.0
    max_cool_off_seconds: float = 600.0

    @property
    def shared(self) -> bool:
        """Whether calls need a share of a fleet-wide limit (a slot or a rate token)."""
        return self.max_in_flight > 0 or self.max_per_second > 0

    @property
    def rate_chunk(self) -> int:
        """Rate tokens a worker takes at a time: a tenth of a second's worth, 1 to 10."""
        return max(1, min(10, self.max_per_second // 10))

    def next_cool_off(self, current: float | None) -> float:
        """The cool-off after a failed probe: twice the last one, at most the maximum."""
        if not current:
            return self.cool_off_seconds
        return min(self.max_cool_off_seconds, max(self.cool_off_seconds, current * 2))


@dataclass(frozen=True)
class SlotLease:
    """One worker's share of a host's in-flight limit: `held` slots until `until` (epoch
    seconds), and `wanted` more it is waiting for (so that holders give back down to a fair
    share)."""

    held: int
    wanted: int
    until: float


@dataclass(frozen=True)
class HostState:
    """A host's state as the table keeps it (see `store.hosts`). Times are UTC timestamps
    (`domain.format_timestamp`), which sort as text."""

    host: str
    failures: int = 0  # consecutive failed calls, across the fleet
    circuit: Circuit = Circuit.CLOSED
    circuit_since: str | None = None
    circuit_reason: str = ""
    circuit_by: str = ""
    open_until: str | None = None
    cool_off_seconds: float | None = None
    probe_token: str | None = None
    probe_until: str | None = None
    paused_since: str | None = None
    paused_until: str | None = None
    paused_reason: str = ""
    paused_by: str = ""
    slots_version: int = 0
    slots: dict[str, SlotLease] = field(default_factory=dict)

    def paused_at(self, now: datetime) -> bool:
        """Whether a pause holds at `now` (one with an end time ends by itself)."""
        if self.paused_since is None:
            return False
        return self.paused_until is None or format_timestamp(now) < self.paused_until

    def guarded_at(self, now: datetime) -> bool:
        """Whether anything holds the host back at `now` (for the dashboard)."""
        return self.circuit != Circuit.CLOSED or self.paused_at(now)

    def probe_due(self, now: datetime) -> bool:
        """Whether a worker may take the probe now: the cool-off is over, or the last probe's
        holder let its lease run out (it died, or had nothing to send)."""
        stamp = format_timestamp(now)
        if self.circuit == Circuit.OPEN:
            return self.open_until is None or self.open_until <= stamp
        if self.circuit == Circuit.HALF_OPEN:
            return self.probe_until is None or self.probe_until <= stamp
        return False

    def live_slots(self, now_epoch: float) -> dict[str, SlotLease]:
        return {worker: lease for worker, lease in self.slots.items() if lease.until > now_epoch}


@dataclass(frozen=True)
class HostEvent:
    """One recorded transition of a host: who, when, why."""

    host: str
    transition: Transition
    at: str
    actor: str
    reason: str


def fair_share(
    *,
    limit: int,
    state: HostState,
    me: str,
    demand: int,
    in_use: int,
    holding: int,
    now_epoch: float,
) -> tuple[int, int]:
    """How many of a host's `limit` slots worker `me` should hold, and how many more it still
    wants, given its `demand` (calls in flight and waiting), what it holds now, and what the
    other live workers hold and want.

    A worker never records fewer slots than it has calls in flight (`in_use`): the sum of what
    live workers hold, which the conditional write keeps within the limit, stays at least what
    is really in flight. While others are waiting, a worker keeps at most an even share; while
    nobody waits it keeps what it holds, so that a share is not rewritten each time its demand
    moves."""
    others = [lease for w, lease in state.live_slots(now_epoch).items() if w != me]
    free = max(0, limit - sum(lease.held for lease in others))
    desired = min(demand, limit)
    if any(lease.wanted for lease in others):
        claimants = 1 + sum(1 for lease in others if lease.held or lease.wanted)
        held = min(desired, math.ceil(limit / claimants), free)
    else:
        held = min(max(desired, holding), free)
    held = max(in_use, held)
    return held, max(0, desired - held)
