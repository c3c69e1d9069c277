"""Operators' hands on target hosts and scheduled retries: pause and resume a host, pull
scheduled retries forward ("deliver now") for one message or for every waiting message of a
host, and set a host's policy from the command line (the admin edits policies as a ModelAdmin).

A pause and a resume are recorded in the host's events and counted in metrics; a message pulled
forward gets the operator and the reason in its history. Pulling forward is the guarded
QUEUED -> QUEUED transition, conditional on the schedule the operator's read saw, so two
operators (or a command next to the admin) pulling the same message forward send it once.
"""

from __future__ import annotations

import enum
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from notifications import metrics
from notifications.aws import AWSUnavailable
from notifications.clock import Clock, system_clock
from notifications.domain import (
    HistoryEntry,
    Message,
    Status,
    TransitionConflict,
    format_timestamp,
)
from notifications.hosts import HostState, Transition, normalize_host
from notifications.models import HostPolicy
from notifications.queue import WorkQueue, default_queue
from notifications.store import MessageStore, default_store

logger = logging.getLogger(__name__)

POLICY_FIELDS = ("max_in_flight", "max_per_second", "failure_threshold", "cool_off_seconds")


def host_pause(
    *,
    host: str,
    actor: str,
    reason: str,
    until: datetime | None = None,
    store: MessageStore | None = None,
    clock: Clock = system_clock,
) -> HostState:
    """Stop sending to `host` until it is resumed, or until `until`: its messages wait, spending
    neither attempts nor receive counts. Pausing a paused host changes its reason and end."""
    host = normalize_host(host)
    now = clock.now()
    if until is not None and until <= now:
        raise ValueError("The end of a pause must be in the future.")
    state = (store or default_store()).hosts.pause(
        host, now=now, until=until, actor=actor, reason=reason
    )
    metrics.record_host_transition(Transition.PAUSED.value)
    logger.warning("host %s paused by %s: %s", host, actor, reason)
    return state


def host_resume(
    *,
    host: str,
    actor: str,
    reason: str,
    store: MessageStore | None = None,
    clock: Clock = system_clock,
) -> HostState | None:
    """End a pause (None when the host was not paused). Messages that waited in workers go
    within HOST_STATE_REFRESH_SECONDS; those deferred through SQS within a minute (or at once
    with `host_deliver_now`)."""
    host = normalize_host(host)
    state = (store or default_store()).hosts.resume(
        host, now=clock.now(), actor=actor, reason=reason
    )
    if state is not None:
        metrics.record_host_transition(Transition.RESUMED.value)
        logger.warning("host %s resumed by %s: %s", host, actor, reason)
    return state


class PullForward(enum.StrEnum):
    """What "deliver now" did with one message."""

    PULLED = "pulled forward"
    DUE = "already due"
    NOT_QUEUED = "not QUEUED"
    CHANGED = "changed meanwhile"
    MISSING = "not found"


def message_deliver_now(
    *,
    message_id: str,
    actor: str,
    reason: str,
    store: MessageStore | None = None,
    queue: WorkQueue | None = None,
    clock: Clock = system_clock,
) -> tuple[PullForward, Message | None]:
    """Pull a QUEUED message's scheduled retry forward to now and send it a queue message."""
    store = store or default_store()
    return _pull_forward(store.get(message_id), actor, reason, store, queue, clock)


def _pull_forward(
    message: Message | None,
    actor: str,
    reason: str,
    store: MessageStore,
    queue: WorkQueue | None,
    clock: Clock,
) -> tuple[PullForward, Message | None]:
    if message is None:
        return PullForward.MISSING, None
    if message.status != Status.QUEUED:
        return PullForward.NOT_QUEUED, message
    now = format_timestamp(clock.now())
    if not message.next_attempt_at or message.next_attempt_at <= now:
        return PullForward.DUE, message
    entry = HistoryEntry(
        Status.QUEUED,
        Status.QUEUED,
        now,
        actor,
        f"deliver now: {reason}" if reason else "deliver now",
    )
    try:
        pulled = store.transition(
            message.id,
            producer_id=message.producer_id,
            expected=Status.QUEUED,
            target=Status.QUEUED,
            entry=entry,
            changes={"next_attempt_at": now},
            # Only the schedule this read saw: of two operators pulling it forward, one does.
            next_attempt_was=message.next_attempt_at,
        )
    except TransitionConflict as conflict:
        return PullForward.CHANGED, conflict.current
    try:
        (queue or default_queue()).send_for(pulled)
    except AWSUnavailable as error:
        # QUEUED and due: the reconciler re-sends it after RECONCILE_OLDER_THAN.
        logger.warning(
            "message %s pulled forward but not sent, reconcile will: %s", message.id, error
        )
    return PullForward.PULLED, pulled


@dataclass
class DeliverNowReport:
    """What "deliver now" for a host did: messages by outcome, and whether a circuit closed."""

    host: str
    counts: Counter[str] = field(default_factory=Counter)
    pulled: list[str] = field(default_factory=list)
    circuit_closed: bool = False
    paused: bool = False

    def summary(self) -> str:
        parts = [f"{self.counts[PullForward.PULLED]} pulled forward"]
        parts += [
            f"{count} skipped: {outcome}"
            for outcome, count in sorted(self.counts.items())
            if outcome != PullForward.PULLED and count
        ]
        if self.circuit_closed:
            parts.append("circuit closed")
        if self.paused:
            parts.append("the host is still paused: its messages wait until it is resumed")
        return ", ".join(parts)


def host_deliver_now(
    *,
    host: str,
    actor: str,
    reason: str,
    store: MessageStore | None = None,
    queue: WorkQueue | None = None,
    clock: Clock = system_clock,
) -> DeliverNowReport:
    """After a vendor says it is back: close the host's circuit if it is open (recorded as the
    operator's), and pull every scheduled retry of the host's QUEUED messages forward. A pause
    stays (resume it first). Reads the status index's QUEUED partitions (the host of each message
    is projected there), so it costs in proportion to what is QUEUED."""
    host = normalize_host(host)
    store = store or default_store()
    now = clock.now()
    report = DeliverNowReport(host)
    closed = store.hosts.close_by_operator(
        host, now=now, actor=actor, reason=f"deliver now: {reason}" if reason else "deliver now"
    )
    if closed is not None:
        metrics.record_host_transition(Transition.CLOSED_BY_OPERATOR.value)
        report.circuit_closed = True
        report.paused = closed.paused_at(now)
    else:
        report.paused = store.hosts.read(host).paused_at(now)
    for message in store.iter_status(Status.QUEUED):
        if message.request.host != host:
            continue
        outcome, _ = _pull_forward(message, actor, reason, store, queue, clock)
        report.counts[outcome] += 1
        if outcome == PullForward.PULLED:
            report.pulled.append(message.id)
    return report


def host_policy_set(*, host: str, clear: bool = False, **values: Any) -> HostPolicy | None:
    """Create or change a host's policy (`values`: any of POLICY_FIELDS and `note`; None keeps
    a field's default), or with `clear` remove it (None). Workers see it within
    HOST_STATE_REFRESH_SECONDS."""
    host = normalize_host(host)
    if clear:
        HostPolicy.objects.filter(host=host).delete()
        return None
    unknown = set(values) - {*POLICY_FIELDS, "note"}
    if unknown:
        raise ValueError(f"unknown policy fields {sorted(unknown)}")
    policy, _ = HostPolicy.objects.get_or_create(host=host)
    for name, value in values.items():
        setattr(policy, name, value)
    policy.full_clean()
    policy.save()
    return policy
