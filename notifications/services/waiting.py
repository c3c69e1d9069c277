"""Decisions about a message that waits instead of being delivered now: defer it through SQS
(its host is busy), postpone it (not due yet), hold it (its producer is deactivated), and keep
one that waits in a worker's line from looking lost to the reconciler."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from notifications.clock import Clock, system_clock
from notifications.domain import (
    FailureReason,
    Message,
    Status,
    format_timestamp,
)
from notifications.queue import MAX_DELAY_SECONDS, WorkQueue, default_queue
from notifications.services.delivery import ClaimResult, claim_blocker, release_claim
from notifications.services.messages import move_next_attempt
from notifications.store import MessageStore, default_store

# Statuses a message can wait in (anything else: another copy of its queue message got it).
WAITING_STATUSES = frozenset({Status.QUEUED, Status.PENDING})


def delivery_blocker(
    *, message_id: str, store: MessageStore | None = None, clock: Clock = system_clock
) -> tuple[Message | None, ClaimResult | None]:
    """Read a message and say what stands in the way of claiming it now (see `claim_blocker`):
    for a message that was refused on its queue message's hint, before anything was read."""
    message = (store or default_store()).get(message_id)
    return message, claim_blocker(message, clock.now())


def delivery_defer(
    *,
    message: Message,
    delay_seconds: int,
    store: MessageStore | None = None,
    queue: WorkQueue | None = None,
    clock: Clock = system_clock,
) -> None:
    """Look at a message held back by admission again in `delay_seconds`, through a new queue
    message (a new one, so the wait does not spend the receive count meant for poison). Its
    next_attempt_at moves along first, so the reconciler does not take it for one whose queue
    message was lost; if that move lost a race (a reconciler re-sent it meanwhile), the new queue
    message is sent all the same: a duplicate is harmless, a lost message is not."""
    move_next_attempt(
        message=message,
        to=clock.now() + timedelta(seconds=delay_seconds),
        store=store or default_store(),
    )
    (queue or default_queue()).send_for(message, delay_seconds=delay_seconds)


def delivery_postpone(
    *, message: Message, wait_seconds: float, queue: WorkQueue | None = None
) -> None:
    """A message that is not due yet: chain a new queue message for the rest of the wait (SQS
    delays stop at 15 minutes; a new message, so the wait does not spend the receive count)."""
    (queue or default_queue()).send_for(
        message, delay_seconds=min(math.ceil(wait_seconds), MAX_DELAY_SECONDS)
    )


@dataclass(frozen=True)
class WaitCheck:
    """A waiting message looked at again. `refreshed`: its next_attempt_at moved to now (it
    stays in line); `blocked`: why it can no longer be claimed (it leaves the line); neither: it
    is claimable as it is (an expired lease, or a message not in a waiting status)."""

    message: Message | None
    refreshed: bool = False
    blocked: ClaimResult | None = None


def delivery_wait_refresh(
    *,
    message_id: str,
    known: Message | None,
    store: MessageStore | None = None,
    clock: Clock = system_clock,
) -> WaitCheck:
    """Keep a message that waits in a worker's line from looking lost to the reconciler: move its
    next_attempt_at to now, guarded on the value last seen (`known`, or read now). A message that
    turns out not to be claimable (not due yet, claimed through another copy, finished, gone) is
    reported as blocked, for the worker to handle as its claim would have."""
    store = store or default_store()
    moment = clock.now()
    message = known or store.get(message_id)
    blocked = claim_blocker(message, moment)
    if blocked is None and message is not None and message.status in WAITING_STATUSES:
        if move_next_attempt(message=message, to=moment, store=store):
            return WaitCheck(replace(message, next_attempt_at=format_timestamp(moment)), True)
        message = store.get(message_id)  # changed meanwhile (a reconciler)
        blocked = claim_blocker(message, moment)
    return WaitCheck(message, blocked=blocked)


def delivery_hold(
    *,
    claimed: Message,
    worker_id: str,
    reason: str,
    hold_seconds: int,
    store: MessageStore | None = None,
    queue: WorkQueue | None = None,
    clock: Clock = system_clock,
) -> Message | None:
    """PROCESSING -> QUEUED without a call, looked at again in `hold_seconds` (its producer is
    deactivated). The claim's attempt is given back: holding spends no retry budget. `reason`
    becomes its last_error, so callers and operators see why it waits. None when the lease was
    lost meanwhile."""
    return delivery_give_back(
        claimed=claimed,
        worker_id=worker_id,
        reason=reason,
        wait_seconds=hold_seconds,
        changes={"last_error": reason, "last_error_code": FailureReason.PRODUCER_DEACTIVATED},
        store=store,
        queue=queue,
        clock=clock,
    )


def delivery_give_back(
    *,
    claimed: Message,
    worker_id: str,
    reason: str,
    wait_seconds: int,
    changes: dict[str, Any] | None = None,
    store: MessageStore | None = None,
    queue: WorkQueue | None = None,
    clock: Clock = system_clock,
) -> Message | None:
    """PROCESSING -> QUEUED without a call, with the claim's attempt given back (no retry
    budget spent), looked at again in `wait_seconds` through a new queue message: what was
    found once the message was claimed keeps it from going now (its producer is deactivated,
    its host's circuit opened). None when the lease was lost meanwhile."""
    now = clock.now()
    released = release_claim(
        claimed=claimed,
        target=Status.QUEUED,
        worker_id=worker_id,
        reason=reason,
        at=now,
        changes={
            **(changes or {}),
            "next_attempt_at": format_timestamp(now + timedelta(seconds=wait_seconds)),
        },
        increments={"attempt_count": -1, "budget_attempts": -1},
        store=store or default_store(),
        clock=clock,
    )
    if released is None:
        return None
    (queue or default_queue()).send_for(released, delay_seconds=wait_seconds)
    return released
