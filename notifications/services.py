"""Herald's use cases. Views, admin pages and management commands call these; nothing else
changes a message.

Writes go through `store.MessageStore.transition`, the guarded status change; queue sends go through
`queue.WorkQueue`. Time comes from an injected clock.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import json
import logging
import math
import random
import secrets
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction

from notifications.aws import AWSUnavailable
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
    DeliveryRequest,
    HistoryEntry,
    Message,
    Status,
    TransitionConflict,
    format_timestamp,
    parse_timestamp,
)
from notifications.models import Producer, SigningSecret, generate_signing_secret
from notifications.queue import WorkQueue, default_queue
from notifications.store import MessageExists, MessageStore, default_store

logger = logging.getLogger(__name__)


class MessageNotFound(Exception):
    pass


class InvalidState(Exception):
    """The message is not in a state that allows the requested change."""

    def __init__(self, message: Message) -> None:
        super().__init__(f"message {message.id} is {message.status}")
        self.message = message


class IdempotencyKeyReused(Exception):
    """The idempotency key was used before for a different request."""

    def __init__(self, existing: Message) -> None:
        super().__init__("idempotency key reused with a different request")
        self.existing = existing


@dataclass(frozen=True)
class Submission:
    """A validated request from a producer."""

    target_url: str
    method: str
    headers: dict[str, str]
    body: str | None
    body_is_json: bool
    metadata: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None

    def fingerprint(self) -> str:
        canonical = json.dumps(
            {
                "target_url": self.target_url,
                "method": self.method,
                "headers": self.headers,
                "body": self.body,
                "body_is_json": self.body_is_json,
                "metadata": self.metadata,
            },
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class SubmitResult:
    message: Message
    replayed: bool


def _encode_id(raw: bytes) -> str:
    return "msg_" + base64.b32encode(raw).decode().rstrip("=").lower()[:26]


def message_id_for(*, producer_id: str, idempotency_key: str | None) -> str:
    """With an idempotency key the id is derived from (producer, key): the conditional PutItem on
    that id is then the deduplication, atomic without a second table or a transaction."""
    if idempotency_key is None:
        return _encode_id(secrets.token_bytes(20))
    digest = hashlib.sha256(f"{producer_id}\x1f{idempotency_key}".encode()).digest()
    return _encode_id(digest)


def message_submit(
    *,
    producer_id: str,
    submission: Submission,
    store: MessageStore | None = None,
    queue: WorkQueue | None = None,
    clock: Clock = system_clock,
) -> SubmitResult:
    """Store the message durably as PENDING, then queue it.

    Raises AWSUnavailable when the message could not be stored (nothing was written), and
    IdempotencyKeyReused for a different request under a known key. A failure after the message is
    stored does not raise: the message stays PENDING and reconciliation queues it later.
    """
    store = store or default_store()
    queue = queue or default_queue()
    now = format_timestamp(clock.now())
    actor = f"producer:{producer_id}"
    message = Message(
        id=message_id_for(producer_id=producer_id, idempotency_key=submission.idempotency_key),
        producer_id=producer_id,
        status=Status.PENDING,
        request=DeliveryRequest(
            url=submission.target_url,
            method=submission.method,
            headers=submission.headers,
            body=submission.body,
            body_is_json=submission.body_is_json,
        ),
        created_at=now,
        updated_at=now,
        metadata=submission.metadata,
        idempotency_key=submission.idempotency_key,
        fingerprint=submission.fingerprint(),
        budget_started_at=now,
        next_attempt_at=now,
        history=(HistoryEntry(None, Status.PENDING, now, actor, "accepted"),),
    )
    try:
        store.put_new(message)
    except MessageExists as exists:
        existing = exists.existing
        if submission.idempotency_key is None or existing.producer_id != producer_id:
            raise AWSUnavailable("message id collision") from exists
        if existing.fingerprint != message.fingerprint:
            raise IdempotencyKeyReused(existing) from exists
        return SubmitResult(existing, replayed=True)
    return SubmitResult(
        message_enqueue(message=message, actor=actor, store=store, queue=queue, clock=clock),
        replayed=False,
    )


def message_enqueue(
    *,
    message: Message,
    actor: str,
    reason: str = "sent to the work queue",
    store: MessageStore | None = None,
    queue: WorkQueue | None = None,
    clock: Clock = system_clock,
) -> Message:
    """Send a PENDING message to SQS, then mark it QUEUED. The PENDING item is the outbox: if either
    step fails the message stays PENDING (or QUEUED without an SQS message) and the reconciler
    finishes the job, so a fault here is logged, not raised."""
    store = store or default_store()
    queue = queue or default_queue()
    try:
        queue.send_for(message)
    except AWSUnavailable as error:
        logger.warning("message %s stays PENDING: %s", message.id, error)
        return message
    entry = HistoryEntry(
        Status.PENDING, Status.QUEUED, format_timestamp(clock.now()), actor, reason
    )
    try:
        return store.transition(
            message.id, expected=Status.PENDING, target=Status.QUEUED, entry=entry
        )
    except TransitionConflict as conflict:
        # A worker claimed it between our send and this update: it is on its way, which is success.
        return conflict.current or message
    except AWSUnavailable as error:
        logger.warning("message %s sent but not marked QUEUED: %s", message.id, error)
        return message


def message_requeue(
    *,
    message_id: str,
    actor: str,
    reason: str = "",
    producer_id: str | None = None,
    store: MessageStore | None = None,
    queue: WorkQueue | None = None,
    clock: Clock = system_clock,
) -> Message:
    """FAILED -> QUEUED with a fresh retry budget, then send to SQS.

    `producer_id` restricts the change to that producer's messages (API callers). Raises
    MessageNotFound, or InvalidState carrying the message as it is. If the SQS send fails the
    message is QUEUED without a queue message; the reconciler re-sends it.
    """
    store = store or default_store()
    queue = queue or default_queue()
    current = store.get(message_id)
    if current is None or (producer_id is not None and current.producer_id != producer_id):
        raise MessageNotFound(message_id)
    if current.status != Status.FAILED:
        raise InvalidState(current)
    now = format_timestamp(clock.now())
    entry = HistoryEntry(Status.FAILED, Status.QUEUED, now, actor, reason or "requeued")
    try:
        requeued = store.transition(
            message_id,
            expected=Status.FAILED,
            target=Status.QUEUED,
            entry=entry,
            changes={"budget_attempts": 0, "budget_started_at": now, "next_attempt_at": now},
        )
    except TransitionConflict as conflict:
        if conflict.current is None:
            raise MessageNotFound(message_id) from conflict
        raise InvalidState(conflict.current) from conflict
    try:
        queue.send_for(requeued)
    except AWSUnavailable as error:
        logger.warning("message %s requeued but not sent, reconcile will: %s", message_id, error)
    return requeued


# -- delivery -------------------------------------------------------------------------------------


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


def delivery_claim(
    *,
    message_id: str,
    worker_id: str,
    lease_seconds: float,
    admit: Callable[[str, bool], bool] | None = None,
    host_hint: str | None = None,
    retry_hint: bool = False,
    store: MessageStore | None = None,
    clock: Clock = system_clock,
) -> ClaimResult:
    """PENDING|QUEUED -> PROCESSING (or re-claim of an expired lease) with a fresh lease token.

    The claim counts the attempt (attempt_count and budget_attempts go up here), so a worker that
    dies mid-call still used up an attempt, and the attempt number is unique per claim.
    `admit(host, retry)`, asked just before the write, lets the caller decline a claimable message
    (the worker's per-host and retry limits); the result is then DEFERRED and nothing is written.

    With `host_hint` (from the queue message) the usual case costs one call: a conditional
    QUEUED -> PROCESSING that also requires the message to be due. Only when that condition fails
    (the message is PENDING, not due, busy, finished, missing) is the decision taken on the item
    the failed write returned. When `admit` refuses the hint, the result is DEFERRED without a
    message: nothing was read. Without a hint the message is read first.
    """
    store = store or default_store()
    if host_hint is not None:
        if admit is not None and not admit(host_hint, retry_hint):
            return ClaimResult(ClaimState.DEFERRED)  # nothing read, nothing written
        now = clock.now()
        try:
            claimed = _claim_write(
                store,
                message_id,
                expected=Status.QUEUED,
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
        if admit is not None and not admit(message.request.host, message.attempt_count > 0):
            return ClaimResult(ClaimState.DEFERRED, message)
        try:
            claimed = _claim_write(
                store,
                message_id,
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
    expected: Status,
    now: datetime,
    worker_id: str,
    reason: str,
    lease_seconds: float,
    due_by: str | None = None,
    lease_expired_before: str | None = None,
) -> Message:
    """The claim itself: `expected` -> PROCESSING with a fresh lease, counting the attempt."""
    entry = HistoryEntry(
        expected, Status.PROCESSING, format_timestamp(now), f"worker:{worker_id}", reason
    )
    return store.transition(
        message_id,
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
    if result.status_code is None:
        return result.error or "no response"
    snippet = " ".join(result.snippet.split())[:200]
    return f"HTTP {result.status_code}" + (f": {snippet}" if snippet else "")


def delivery_record(
    *,
    claim: Message,
    result: HttpResult,
    started_at: datetime,
    worker_id: str,
    policy: OutcomePolicy,
    schedule: RetrySchedule,
    store: MessageStore | None = None,
    queue: WorkQueue | None = None,
    clock: Clock = system_clock,
    rng: random.Random | None = None,
) -> DeliveryOutcome:
    """Store the attempt, then move the message on, conditional on still holding the lease."""
    store = store or default_store()
    queue = queue or default_queue()
    now = clock.now()
    verdict = policy.verdict(result.status_code, blocked=result.blocked)
    error = None if verdict == Verdict.DELIVERED else describe_result(result)
    store.put_attempt(
        claim.id,
        Attempt(
            number=claim.attempt_count,
            started_at=format_timestamp(started_at),
            duration_ms=result.duration_ms,
            outcome=verdict.value,
            worker=worker_id,
            status_code=result.status_code,
            error=result.error,
            response_headers=result.headers,
            response_snippet=result.snippet,
        ),
    )
    delay = None
    if verdict == Verdict.DELIVERED:
        target, reason = Status.COMPLETED, describe_result(result)
    elif verdict == Verdict.PERMANENT:
        target, reason = Status.FAILED, f"permanent failure: {error}"
    else:
        retry_after = None
        if result.status_code in RETRY_AFTER_STATUSES:
            retry_after = retry_after_seconds(result.headers.get("retry-after"), now)
        delay = schedule.delay_after(claim.budget_attempts, retry_after=retry_after, rng=rng)
        if schedule.exhausted(
            attempts=claim.budget_attempts,
            budget_started=parse_timestamp(claim.budget_started_at or claim.created_at),
            now=now + timedelta(seconds=delay),
        ):
            target, delay = Status.FAILED, None
            reason = f"retry budget spent after {claim.budget_attempts} attempt(s): {error}"
        else:
            target, reason = Status.QUEUED, f"retry in {delay:.0f}s after {error}"
    changes: dict[str, Any] = {
        "lease_token": None,
        "lease_expires_at": None,
        "last_error": error,
        "next_attempt_at": (
            format_timestamp(now + timedelta(seconds=delay or 0))
            if target == Status.QUEUED
            else None
        ),
    }
    entry = HistoryEntry(
        Status.PROCESSING, target, format_timestamp(now), f"worker:{worker_id}", reason
    )
    try:
        updated = store.transition(
            claim.id,
            expected=Status.PROCESSING,
            target=target,
            entry=entry,
            changes=changes,
            lease_token=claim.lease_token,
        )
    except TransitionConflict:
        logger.warning("message %s: lease lost before the result was stored; refused", claim.id)
        return DeliveryOutcome(verdict, None)
    if target == Status.QUEUED:
        try:
            queue.send_for(updated, delay_seconds=math.ceil(delay or 0))
        except AWSUnavailable as failure:
            logger.warning("message %s: retry not sent, reconcile will: %s", claim.id, failure)
    return DeliveryOutcome(verdict, updated, delay)


def delivery_give_up(
    *,
    claim: Message,
    worker_id: str,
    reason: str,
    store: MessageStore | None = None,
    clock: Clock = system_clock,
) -> Message | None:
    """PROCESSING -> FAILED without a call (a spent budget found at claim time)."""
    store = store or default_store()
    now = format_timestamp(clock.now())
    entry = HistoryEntry(Status.PROCESSING, Status.FAILED, now, f"worker:{worker_id}", reason)
    try:
        return store.transition(
            claim.id,
            expected=Status.PROCESSING,
            target=Status.FAILED,
            entry=entry,
            changes={"lease_token": None, "lease_expires_at": None, "last_error": reason},
            lease_token=claim.lease_token,
        )
    except TransitionConflict:
        return None


# -- recovery -------------------------------------------------------------------------------------


def messages_reconcile(
    *,
    older_than: float,
    dry_run: bool = False,
    actor: str = "reconciler",
    store: MessageStore | None = None,
    queue: WorkQueue | None = None,
    clock: Clock = system_clock,
    progress: Callable[[str, Message], None] | None = None,
) -> Counter[str]:
    """Finish what a crash or an AWS fault left half done. Safe beside workers and beside itself:
    every change is a guarded transition, so the worst case is a duplicate queue message.

    - PENDING older than `older_than` (never sent, or not marked QUEUED): send, mark QUEUED.
    - PROCESSING whose lease expired (the worker died): back to QUEUED and re-sent.
    - QUEUED whose next attempt is more than `older_than` overdue (its queue message was lost):
      re-sent.
    """
    store = store or default_store()
    queue = queue or default_queue()
    counts: Counter[str] = Counter()
    now = clock.now()
    threshold = format_timestamp(now - timedelta(seconds=older_than))
    stamp = format_timestamp(now)

    def stuck(status: Status, kind: str, is_stuck: Callable[[Message], bool]) -> Iterator[Message]:
        """The messages of `status` that `is_stuck`, counted and reported; none to fix on a dry run."""
        for message in store.iter_status(status):
            if not is_stuck(message):
                continue
            counts[f"{kind}_found"] += 1
            if progress:
                progress(kind, message)
            if not dry_run:
                yield message

    for message in stuck(Status.PENDING, "pending", lambda m: m.created_at < threshold):
        queued = message_enqueue(
            message=message,
            actor=actor,
            reason="reconciled: was PENDING",
            store=store,
            queue=queue,
            clock=clock,
        )
        counts["pending_queued" if queued.status != Status.PENDING else "errors"] += 1

    lease_expired = lambda m: bool(m.lease_expires_at) and m.lease_expires_at < stamp  # noqa: E731
    for message in stuck(Status.PROCESSING, "expired_leases", lease_expired):
        entry = HistoryEntry(
            Status.PROCESSING, Status.QUEUED, stamp, actor, "reconciled: lease expired"
        )
        try:
            store.transition(
                message.id,
                expected=Status.PROCESSING,
                target=Status.QUEUED,
                entry=entry,
                lease_expired_before=stamp,
                changes={"lease_token": None, "lease_expires_at": None, "next_attempt_at": stamp},
            )
            queue.send_for(message)
            counts["expired_leases_requeued"] += 1
        except TransitionConflict:
            counts["skipped_changed_meanwhile"] += 1
        except AWSUnavailable:
            counts["errors"] += 1

    overdue = lambda m: bool(m.next_attempt_at) and m.next_attempt_at < threshold  # noqa: E731
    for message in stuck(Status.QUEUED, "overdue_queued", overdue):
        try:
            # Claim the re-send first, so that concurrent reconcilers send one copy, and the
            # next pass waits another `older_than` before it counts the message as lost again.
            if not store.reschedule(
                message.id,
                status=Status.QUEUED,
                expected_next_attempt_at=message.next_attempt_at,
                next_attempt_at=stamp,
            ):
                counts["skipped_changed_meanwhile"] += 1
                continue
            queue.send_for(message)
            counts["overdue_queued_resent"] += 1
        except AWSUnavailable:
            counts["errors"] += 1
    return counts


def messages_requeue_failed(
    *,
    actor: str,
    reason: str,
    since: datetime | None = None,
    until: datetime | None = None,
    target_host: str | None = None,
    dry_run: bool = False,
    store: MessageStore | None = None,
    queue: WorkQueue | None = None,
    clock: Clock = system_clock,
) -> tuple[Counter[str], list[str]]:
    """Requeue every FAILED message that failed in [since, until) for `target_host`.
    Returns counts and the ids that were (or, with dry_run, would be) requeued."""
    store = store or default_store()
    low = format_timestamp(since) if since else ""
    high = format_timestamp(until) if until else "~"
    host = target_host.lower() if target_host else None
    counts: Counter[str] = Counter()
    ids: list[str] = []
    for message in store.iter_status(Status.FAILED):
        if not low <= message.updated_at < high or (host and message.request.host != host):
            continue
        counts["matched"] += 1
        if dry_run:
            ids.append(message.id)
            continue
        try:
            message_requeue(
                message_id=message.id,
                actor=actor,
                reason=reason,
                store=store,
                queue=queue,
                clock=clock,
            )
        except (InvalidState, MessageNotFound):
            counts["skipped_not_failed"] += 1
            continue
        ids.append(message.id)
        counts["requeued"] += 1
    return counts, ids


# -- producers ------------------------------------------------------------------------------------


def signing_secret_rotate(*, producer: Producer, retire_old: bool = False) -> str:
    """Add a new signing secret to `producer` and return it (the only time it is shown in full).

    Without `retire_old` the older secrets stay, so deliveries carry one signature per secret and
    receivers can move to the new one without a gap; with it, every older secret is removed.
    """
    with transaction.atomic():
        created = SigningSecret.objects.create(producer=producer, secret=generate_signing_secret())
        if retire_old:
            signing_secrets_retire_old(producer=producer)
    return created.secret


def signing_secrets_retire_old(*, producer: Producer) -> int:
    """Remove every signing secret of `producer` but the newest: the end of a rotation, once
    receivers verify with the new secret. Returns how many were removed."""
    newest = producer.signing_secrets.order_by("-created_at", "-id").first()
    if newest is None:
        return 0
    deleted, _ = SigningSecret.objects.filter(producer=producer).exclude(pk=newest.pk).delete()
    return deleted


# -- operator console -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RequeueReport:
    """What an operator's requeue changed: the ids requeued, and the others by reason."""

    requeued: list[str]
    skipped: dict[str, list[str]]

    def summary(self) -> str:
        parts = [f"{len(self.requeued)} requeued"]
        parts += [f"{len(ids)} skipped: {reason}" for reason, ids in self.skipped.items()]
        return ", ".join(parts)


def messages_requeue_selected(
    *,
    message_ids: list[str],
    actor: str,
    reason: str,
    store: MessageStore | None = None,
    queue: WorkQueue | None = None,
    clock: Clock = system_clock,
) -> RequeueReport:
    """Requeue each selected message that is FAILED; report the others without changing them.
    Each requeue is the guarded FAILED -> QUEUED, so the same selection submitted twice
    requeues every message once."""
    requeued: list[str] = []
    skipped: dict[str, list[str]] = {}
    for message_id in dict.fromkeys(message_ids):
        try:
            message_requeue(
                message_id=message_id,
                actor=actor,
                reason=reason,
                store=store,
                queue=queue,
                clock=clock,
            )
        except MessageNotFound:
            skipped.setdefault("not found", []).append(message_id)
        except InvalidState:
            skipped.setdefault("not FAILED", []).append(message_id)
        except AWSUnavailable:
            skipped.setdefault("AWS unavailable, try again", []).append(message_id)
        else:
            requeued.append(message_id)
    return RequeueReport(requeued, skipped)


def status_counters_recount(*, store: MessageStore | None = None) -> dict[Status, int]:
    """Reset the dashboard's status counters to exact counts (after a lost counter update, or
    on a table that holds messages from before the counters). Reads every index item once; run
    it when traffic is low, since changes made while it runs can be missed."""
    return (store or default_store()).recount_status_counters()
