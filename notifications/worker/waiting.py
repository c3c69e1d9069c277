"""The worker's waiting line: messages held back by admission, keeping their queue messages.

A message whose host is at its limit (or a retry while retries have their share of the slots)
waits here instead of going back to SQS: it keeps its queue message (the heartbeat keeps it
invisible), takes no delivery slot, and starts as soon as admission lets it, in arrival order
(roughly: a newly received message can take a freed slot first). Waiting so costs no receive
count and no AWS calls beyond the heartbeat's batched visibility extensions and, now and then, a
long waiter's next_attempt_at moving along (see `services.delivery_wait_refresh`).

The line has its own lock. The worker may call it while holding its own slot lock, never the
other way round.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from notifications.delivery.admission import Ticket
from notifications.domain import Message
from notifications.queue import QueuedWork
from notifications.services import Candidate


@dataclass(frozen=True)
class Refusal:
    """What admission refused: the candidate it decided on, and the message when the claim read
    it (a claim refused on the queue message's hints reads nothing)."""

    candidate: Candidate
    message: Message | None


@dataclass
class Waiter:
    """A message in the line, with its queue message."""

    work: QueuedWork
    refusal: Refusal
    visible_until: float  # monotonic: when its queue message becomes visible again
    fresh_until: float  # monotonic: when its next_attempt_at must move on


class WaitingLine:
    def __init__(self, *, capacity: int) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._waiters: dict[str, Waiter] = {}  # by receipt handle, in arrival order

    def __len__(self) -> int:
        with self._lock:
            return len(self._waiters)

    def has_room(self) -> bool:
        with self._lock:
            return len(self._waiters) < self.capacity

    def add(self, waiter: Waiter) -> None:
        with self._lock:
            self._waiters[waiter.work.receipt_handle] = waiter

    def ahead_for(self, host: str) -> int:
        """How many messages for `host` are waiting."""
        with self._lock:
            return sum(1 for w in self._waiters.values() if w.refusal.candidate.host == host)

    def start_ready(
        self,
        *,
        slots: int,
        admit: Callable[[Candidate], Ticket | None],
        start: Callable[[Waiter, Ticket], bool],
    ) -> None:
        """Start waiters that admission now lets through, oldest first, up to `slots` of them.
        `start` takes the waiter and its ticket and returns False when nothing can start any
        more (the worker is stopping); the waiter then stays in line and the ticket is the
        caller's to release."""
        with self._lock:
            for receipt, waiter in list(self._waiters.items()):
                if slots <= 0:
                    return
                ticket = admit(waiter.refusal.candidate)
                if ticket is None:
                    continue
                if not start(waiter, ticket):
                    return
                del self._waiters[receipt]
                slots -= 1

    def visibility_due(self, before: float) -> list[str]:
        """Receipt handles whose queue messages become visible again before `before`."""
        with self._lock:
            return [r for r, waiter in self._waiters.items() if waiter.visible_until < before]

    def extended(self, receipts: list[str], until: float) -> None:
        """Their visibility was extended until `until`."""
        with self._lock:
            for receipt in receipts:
                if receipt in self._waiters:
                    self._waiters[receipt].visible_until = until

    def due_for_refresh(self, now: float) -> list[Waiter]:
        with self._lock:
            return [waiter for waiter in self._waiters.values() if waiter.fresh_until <= now]

    def update(self, receipt: str, message: Message | None, *, fresh_until: float | None) -> None:
        """A waiter was looked at again: keep what was read, and when to look next."""
        with self._lock:
            waiter = self._waiters.get(receipt)
            if waiter is None:
                return
            waiter.refusal = Refusal(waiter.refusal.candidate, message)
            if fresh_until is not None:
                waiter.fresh_until = fresh_until

    def remove(self, receipt: str) -> Waiter | None:
        with self._lock:
            return self._waiters.pop(receipt, None)

    def take_all(self) -> list[Waiter]:
        with self._lock:
            waiters, self._waiters = list(self._waiters.values()), {}
            return waiters
