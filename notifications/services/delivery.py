"""Delivery use cases: claim a message under a lease, record an attempt's outcome, give up.

The worker holds SQS receipts and threads; every change to a message's status or
`next_attempt_at` it needs is one of these functions or those of `services.waiting`.

An attempt's outcome is stored twice over: the detail (`last_error`, the attempt's `error`: a
refused address, a resolver's message) for operators, and a `FailureReason` code for producers.
History entries, which producers read too, name the code or the HTTP answer, never the detail.
"""

from __future__ import annotations

import enum
import logging
import math
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from notifications import metrics
from notifications.aws import AWSRefused, AWSUnavailable
from notifications.clock import Clock, system_clock
from notifications.delivery.backoff import RetrySchedule
from notifications.delivery.http import HttpResult
from notifications.delivery.policy import (
    RETRY_AFTER_STATUSES,
    OutcomePolicy,
    Verdict,
    retry_after_seconds,
)
from notifications.domain import (
    TERMINAL_STATUSES,
    Attempt,
    FailureReason,
    HistoryEntry,
    Message,
    Status,
    TransitionConflict,
    format_timestamp,
    parse_timestamp,
)
from notifications.logs import log_fields
from notifications.queue import WorkQueue, default_queue
from notifications.store import MessageStore, default_store

logger = logging.getLogger(__name__)

# Pauses between tries of the write that ends a claim, when AWS fails after botocore's own retries
# (an outage, throttling that outlasts them): the vendor has been called by then, and an outcome
# not stored becomes a second call once the lease expires. Tried while the lease lasts.
RELEASE_RETRY_PAUSES = (0.2, 0.5, 1.0, 2.0, 4.0, 8.0)


class ClaimState(enum.StrEnum):
    CLAIMED = "claimed"
    DEFERRED = "deferred"  # claimable, but the caller's admission check said not now
    NOT_DUE = "not_due"  # QUEUED/PENDING with next_attempt_at in the future
    BUSY = "busy"  # PROCESSING under another worker's live lease
    FINISHED = "finished"  # COMPLETED or FAILED already
    MISSING = "missing"  # no such message


@dataclass(frozen=True)
class ClaimResult:
    state: ClaimState
    message: Message | None = None
    wait_seconds: float = 0.0


@dataclass(frozen=True)
class Candidate:
    """What admission decides on: where the call goes, whose message it is, and whether it
    failed before (from the message, or from its queue message's hints)."""

    host: str
    producer: str | None
    is_retry: bool

    @classmethod
    def of(cls, message: Message) -> Candidate:
        return cls(message.request.host, message.producer_id, message.attempt_count > 0)


def delivery_claim(
    *,
    message_id: str,
    worker_id: str,
    lease_seconds: float,
    admit: Callable[[Candidate], bool] | None = None,
    hint: Candidate | None = None,
    store: MessageStore | None = None,
    clock: Clock = system_clock,
) -> ClaimResult:
    """PENDING|QUEUED -> PROCESSING (or re-claim of an expired lease) with a fresh lease token.

    The claim counts the attempt (attempt_count and budget_attempts go up here), so a worker that
    dies mid-call still used up an attempt, and the attempt number is unique per claim.
    `admit(candidate)`, asked just before the write, lets the caller decline a claimable message
    (the worker's admission limits); the result is then DEFERRED and nothing is written.

    The claimed message comes from the status item: its request's headers and body may still
    have to be read (`MessageStore.with_request`).

    With a `hint` (from the queue message) the usual case costs one call: a conditional
    PENDING|QUEUED -> PROCESSING that also requires the message to be due (PENDING too: the
    queue message can arrive before the intake has marked its message QUEUED). Only when that
    condition fails (the message is not due, busy, finished, missing) is the decision taken on
    the item the failed write returned. When `admit` refuses the hint, the result is DEFERRED without a
    message: nothing was read. Without a hint the message is read first.
    """
    store = store or default_store()
    if hint is not None and hint.producer is not None:
        if admit is not None and not admit(hint):
            return ClaimResult(ClaimState.DEFERRED)  # nothing read, nothing written
        now = clock.now()
        try:
            claimed = _claim_write(
                store,
                message_id,
                producer_id=hint.producer,
                expected=(Status.QUEUED, Status.PENDING),
                now=now,
                worker_id=worker_id,
                reason="claimed",
                lease_seconds=lease_seconds,
                due_by=format_timestamp(now),
            )
            return ClaimResult(ClaimState.CLAIMED, claimed)
        except TransitionConflict as conflict:
            message = conflict.current  # decide on what it is
    else:
        message = store.get(message_id)
    for _ in range(3):
        now = clock.now()
        blocked = claim_blocker(message, now)
        if blocked is not None:
            return blocked
        assert message is not None
        expired_before = None
        reason = "claimed"
        if message.status == Status.PROCESSING:  # its lease expired (else it would be BUSY)
            expired_before = format_timestamp(now)
            reason = f"lease of {message.lease_token or 'unknown'} expired; re-claimed"
        if admit is not None and not admit(Candidate.of(message)):
            return ClaimResult(ClaimState.DEFERRED, message)
        try:
            claimed = _claim_write(
                store,
                message_id,
                producer_id=message.producer_id,
                expected=message.status,
                now=now,
                worker_id=worker_id,
                reason=reason,
                lease_seconds=lease_seconds,
                lease_expired_before=expired_before,
            )
        except TransitionConflict as conflict:
            message = conflict.current  # someone else moved it; decide again on what it is now
            continue
        return ClaimResult(ClaimState.CLAIMED, claimed)
    return ClaimResult(ClaimState.BUSY, message, 1.0)


def claim_blocker(message: Message | None, now: datetime) -> ClaimResult | None:
    """What stands in the way of claiming `message` at `now` (MISSING, FINISHED, BUSY under a
    live lease, NOT_DUE), or None when it is claimable."""
    if message is None:
        return ClaimResult(ClaimState.MISSING)
    if message.status in TERMINAL_STATUSES:
        return ClaimResult(ClaimState.FINISHED, message)
    if message.status == Status.PROCESSING:
        remaining = _seconds_until(message.lease_expires_at, now)
        return ClaimResult(ClaimState.BUSY, message, remaining) if remaining > 0 else None
    remaining = _seconds_until(message.next_attempt_at, now)
    return ClaimResult(ClaimState.NOT_DUE, message, remaining) if remaining > 0 else None


def _claim_write(
    store: MessageStore,
    message_id: str,
    *,
    producer_id: str,
    expected: Status | tuple[Status, ...],
    now: datetime,
    worker_id: str,
    reason: str,
    lease_seconds: float,
    due_by: str | None = None,
    lease_expired_before: str | None = None,
) -> Message:
    """The claim itself: `expected` -> PROCESSING with a fresh lease, counting the attempt.
    With several statuses expected, the entry's `from` is the one the write finds (see
    `MessageRecords.transition`)."""
    entry = HistoryEntry(
        expected if isinstance(expected, Status) else None,
        Status.PROCESSING,
        format_timestamp(now),
        f"worker:{worker_id}",
        reason,
    )
    return store.transition(
        message_id,
        producer_id=producer_id,
        expected=expected,
        target=Status.PROCESSING,
        entry=entry,
        due_by=due_by,
        lease_expired_before=lease_expired_before,
        changes={
            "lease_token": secrets.token_hex(16),
            "lease_expires_at": format_timestamp(now + timedelta(seconds=lease_seconds)),
        },
        increments={"attempt_count": 1, "budget_attempts": 1},
    )


def _seconds_until(timestamp: str | None, now: datetime) -> float:
    if not timestamp:
        return 0.0
    return (parse_timestamp(timestamp) - now).total_seconds()


@dataclass(frozen=True)
class DeliveryOutcome:
    """What the worker stored after an attempt. `message` is None when the lease was lost and
    the result refused; `requeue_delay` is set when a retry was scheduled."""

    verdict: Verdict
    message: Message | None
    requeue_delay: float | None = None


def describe_result(result: HttpResult) -> str:
    """The outcome in full, for operators: the HTTP answer, or the error's detail."""
    if result.status_code is None:
        return result.error or "no response"
    snippet = " ".join(result.snippet.split())[:200]
    return f"HTTP {result.status_code}" + (f": {snippet}" if snippet else "")


def failure_reason(result: HttpResult) -> FailureReason | None:
    """The code producers are told for a result that is not a delivery (None for 2xx)."""
    if result.status_code is None:
        return result.reason or FailureReason.CONNECTION_FAILED
    return None if 200 <= result.status_code < 300 else FailureReason.HTTP_STATUS


def _shown_to_producers(result: HttpResult) -> str:
    """The outcome as history entries tell it: the vendor's answer, or only the failure's code."""
    if result.status_code is None:
        return str(failure_reason(result))
    return describe_result(result)


def delivery_record(
    *,
    claimed: Message,
    result: HttpResult,
    started_at: datetime,
    worker_id: str,
    policy: OutcomePolicy,
    schedule: RetrySchedule,
    store: MessageStore | None = None,
    queue: WorkQueue | None = None,
    clock: Clock = system_clock,
    rng: random.Random | None = None,
    pause: Callable[[float], None] = time.sleep,
) -> DeliveryOutcome:
    """Move the message on with the attempt appended to its log (one write), conditional on
    still holding the lease (tried again through AWS faults while the lease lasts: see
    `release_claim`)."""
    store = store or default_store()
    queue = queue or default_queue()
    now = clock.now()
    verdict = policy.verdict(result.status_code, blocked=result.blocked)
    metrics.observe_attempt(result.duration_ms / 1000, verdict.value)
    error = None if verdict == Verdict.DELIVERED else describe_result(result)
    code = None if verdict == Verdict.DELIVERED else failure_reason(result)
    shown = _shown_to_producers(result)
    if error is not None:  # the detail for operators; a vendor's answer only by its status
        logged = result.error if result.status_code is None else f"HTTP {result.status_code}"
        logger.info(
            "message %s attempt %d: %s (%s)",
            claimed.id,
            claimed.attempt_count,
            logged,
            verdict,
            extra=_fields(claimed, verdict.value, result.duration_ms),
        )
    attempt = Attempt(
        number=claimed.attempt_count,
        started_at=format_timestamp(started_at),
        duration_ms=result.duration_ms,
        outcome=verdict.value,
        worker=worker_id,
        status_code=result.status_code,
        error=result.error,
        error_code=code,
        response_headers=result.headers,
        response_snippet=result.snippet,
    )
    delay = None
    if verdict == Verdict.DELIVERED:
        target, reason = Status.COMPLETED, shown
    elif verdict == Verdict.PERMANENT:
        target, reason = Status.FAILED, f"permanent failure: {shown}"
    else:
        retry_after = None
        if result.status_code in RETRY_AFTER_STATUSES:
            retry_after = retry_after_seconds(result.headers.get("retry-after"), now)
        delay = schedule.delay_after(claimed.budget_attempts, retry_after=retry_after, rng=rng)
        if schedule.exhausted(
            attempts=claimed.budget_attempts,
            budget_started=parse_timestamp(claimed.budget_started_at or claimed.created_at),
            now=now + timedelta(seconds=delay),
        ):
            target, delay = Status.FAILED, None
            reason = f"retry budget spent after {claimed.budget_attempts} attempt(s): {shown}"
        else:
            target, reason = Status.QUEUED, f"retry in {delay:.0f}s after {shown}"
    next_attempt_at = (
        format_timestamp(now + timedelta(seconds=delay or 0)) if target == Status.QUEUED else None
    )
    updated = release_claim(
        claimed=claimed,
        target=target,
        worker_id=worker_id,
        reason=reason,
        at=now,
        changes={"last_error": error, "last_error_code": code, "next_attempt_at": next_attempt_at},
        store=store,
        attempt=attempt,
        clock=clock,
        pause=pause,
    )
    if updated is None:
        logger.warning(
            "message %s: lease lost before the result was stored; refused",
            claimed.id,
            extra=_fields(claimed, "lease_lost", result.duration_ms),
        )
        return DeliveryOutcome(verdict, None)
    if target == Status.COMPLETED:
        metrics.observe_lag((now - parse_timestamp(claimed.created_at)).total_seconds())
    if target == Status.QUEUED:
        try:
            queue.send_for(updated, delay_seconds=math.ceil(delay or 0))
        except AWSUnavailable as failure:
            logger.warning("message %s: retry not sent, reconcile will: %s", claimed.id, failure)
    return DeliveryOutcome(verdict, updated, delay)


def delivery_give_up(
    *,
    claimed: Message,
    worker_id: str,
    reason: str,
    store: MessageStore | None = None,
    clock: Clock = system_clock,
) -> Message | None:
    """PROCESSING -> FAILED without a call (a spent budget found at claim time)."""
    return release_claim(
        claimed=claimed,
        target=Status.FAILED,
        worker_id=worker_id,
        reason=reason,
        at=clock.now(),
        changes={"last_error": reason, "last_error_code": FailureReason.RETRY_BUDGET_SPENT},
        store=store or default_store(),
        clock=clock,
    )


def release_claim(
    *,
    claimed: Message,
    target: Status,
    worker_id: str,
    reason: str,
    at: datetime,
    changes: dict[str, Any],
    store: MessageStore,
    increments: dict[str, int] | None = None,
    attempt: Attempt | None = None,
    clock: Clock = system_clock,
    pause: Callable[[float], None] = time.sleep,
) -> Message | None:
    """End a worker's claim: PROCESSING -> `target`, only under the claim's own lease token,
    with the lease cleared and `changes` applied. None when the lease was lost meanwhile (another
    worker took over, whose outcome must stand).

    An AWS fault does not end the claim unstored at once: the write is tried again after each of
    RELEASE_RETRY_PAUSES while the lease lasts, since an outcome that is not stored makes the
    message look unfinished, and a vendor that was called is then called again by whoever
    re-claims it. The write is safe to repeat: when an earlier try was carried out and only its
    answer lost, the next one finds the message already moved by this very entry, and returns
    it. AWSUnavailable is raised only once the lease is (about to be) over."""
    entry = HistoryEntry(
        Status.PROCESSING, target, format_timestamp(at), f"worker:{worker_id}", reason
    )
    lease_ends = parse_timestamp(claimed.lease_expires_at) if claimed.lease_expires_at else None
    pauses = iter(RELEASE_RETRY_PAUSES)
    while True:
        try:
            return store.transition(
                claimed.id,
                producer_id=claimed.producer_id,
                expected=Status.PROCESSING,
                target=target,
                entry=entry,
                changes={"lease_token": None, "lease_expires_at": None, **changes},
                increments=increments,
                lease_token=claimed.lease_token,
                attempt=attempt,
                known=claimed,  # nobody else writes a message under our lease
            )
        except TransitionConflict as conflict:
            current = conflict.current
            written = current is not None and _moved_by(current, entry)
            return current if written else None
        except AWSRefused:
            raise  # the same request would be refused again
        except AWSUnavailable as fault:
            wait = next(pauses, None)
            if wait is None or lease_ends is None:
                raise
            if clock.now() + timedelta(seconds=wait) >= lease_ends:
                raise
            logger.warning(
                "message %s: outcome not stored yet (%s); trying again in %.1fs",
                claimed.id,
                fault,
                wait,
                extra=log_fields(message_id=claimed.id, outcome="release_retry"),
            )
            pause(wait)


def _moved_by(message: Message, entry: HistoryEntry) -> bool:
    """Whether `message` is as the transition that appended `entry` left it: the write went
    through though its answer was lost (a timeout, a connection cut after the commit)."""
    return message.status == entry.to_status and message.updated_at == entry.at


def _fields(message: Message, outcome: str, duration_ms: int) -> dict[str, Any]:
    """The structured log fields of an attempt (see `logs`)."""
    return log_fields(
        message_id=message.id,
        producer_id=message.producer_id,
        status=message.status.value,
        outcome=outcome,
        attempt=message.attempt_count,
        target_host=message.request.host,
        duration_ms=duration_ms,
    )
