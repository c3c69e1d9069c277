"""Message use cases: submit (store durably, then queue), enqueue, requeue one, a selection, or
every failure matching a filter."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from notifications.aws import AWSUnavailable
from notifications.clock import Clock, system_clock
from notifications.domain import (
    DeliveryRequest,
    HistoryEntry,
    IdempotencyKeyReused,
    InvalidState,
    Message,
    MessageExists,
    MessageIdCollision,
    MessageNotFound,
    Status,
    TransitionConflict,
    format_timestamp,
)
from notifications.queue import WorkQueue, default_queue
from notifications.store import MessageStore, default_store

logger = logging.getLogger(__name__)

# Messages of a batch marked QUEUED at a time (each its own guarded transition).
PARALLEL_WRITES = 8


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


def _new_message(producer_id: str, submission: Submission, now: str) -> Message:
    actor = f"producer:{producer_id}"
    return Message(
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


def _replay(message: Message, exists: MessageExists) -> SubmitResult:
    """The answer to a submission whose id is taken: the stored message (the same request
    again), or why not."""
    existing = exists.existing
    if message.idempotency_key is None or existing.producer_id != message.producer_id:
        raise MessageIdCollision(message.id) from exists
    if existing.fingerprint != message.fingerprint:
        raise IdempotencyKeyReused(existing) from exists
    # The same request (same fingerprint): shown whole without reading the request item.
    return SubmitResult(replace(existing, request=message.request, request_loaded=True), True)


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
    message = _new_message(producer_id, submission, format_timestamp(clock.now()))
    try:
        store.put_new(message)
    except MessageExists as exists:
        return _replay(message, exists)
    return SubmitResult(
        message_enqueue(
            message=message,
            actor=f"producer:{producer_id}",
            store=store,
            queue=queue,
            clock=clock,
            as_stored=True,
        ),
        replayed=False,
    )


def message_submit_many(
    *,
    producer_id: str,
    submissions: Sequence[Submission],
    store: MessageStore | None = None,
    queue: WorkQueue | None = None,
    clock: Clock = system_clock,
) -> list[SubmitResult | Exception]:
    """`message_submit` for a batch, with one result per submission in order: a SubmitResult,
    or the exception `message_submit` would have raised for that one (AWSUnavailable,
    IdempotencyKeyReused, MessageTooLarge, MessageIdCollision). Stored with batched request
    writes (see `MessageStore.put_new_many`), queued with SendMessageBatch, then marked QUEUED
    one by one (each a guarded transition, a few at a time). Whatever is stored but not sent or
    not marked stays PENDING for the reconciler, as with one message."""
    store = store or default_store()
    queue = queue or default_queue()
    now = format_timestamp(clock.now())
    messages = [_new_message(producer_id, submission, now) for submission in submissions]
    # One write per message id: an Idempotency-Key repeated within the batch is answered as the
    # single endpoint would answer it after the first (a replay, or a different request under
    # a used key), whatever the order the writes would have raced in.
    first: dict[str, Message] = {}
    for message in messages:
        first.setdefault(message.id, message)
    unique = list(first.values())
    stored: dict[str, SubmitResult | Exception] = {}
    for message, failure in zip(unique, store.put_new_many(unique), strict=True):
        if failure is None:
            stored[message.id] = SubmitResult(message, replayed=False)
        elif isinstance(failure, MessageExists):
            try:
                stored[message.id] = _replay(message, failure)
            except (MessageIdCollision, IdempotencyKeyReused) as refused:
                stored[message.id] = refused
        else:
            stored[message.id] = failure
    results: list[SubmitResult | Exception] = []
    for message in messages:
        outcome = stored[message.id]
        if message is first[message.id] or isinstance(outcome, Exception):
            results.append(outcome)
            continue
        try:  # a repeat of a key seen earlier in this batch
            existing = outcome.message
            results.append(_replay(message, MessageExists(existing)))
        except (MessageIdCollision, IdempotencyKeyReused) as refused:
            results.append(refused)
    new = [
        outcome.message
        for outcome in stored.values()
        if isinstance(outcome, SubmitResult) and not outcome.replayed
    ]
    sent = queue.send_batch(new) if new else set()
    if not sent:
        return results
    entry_at = format_timestamp(clock.now())

    def mark_queued(message: Message) -> Message:
        return _mark_queued(
            message, f"producer:{producer_id}", "sent to the work queue", entry_at, store, True
        )

    with ThreadPoolExecutor(PARALLEL_WRITES) as pool:
        marked = list(pool.map(mark_queued, [message for message in new if message.id in sent]))
    queued = {message.id: message for message in marked}
    return [
        SubmitResult(queued.get(result.message.id, result.message), False)
        if isinstance(result, SubmitResult) and not result.replayed
        else result
        for result in results
    ]


def message_enqueue(
    *,
    message: Message,
    actor: str,
    reason: str = "sent to the work queue",
    store: MessageStore | None = None,
    queue: WorkQueue | None = None,
    clock: Clock = system_clock,
    as_stored: bool = False,
) -> Message:
    """Send a PENDING message to SQS, then mark it QUEUED. The PENDING item is the outbox: if either
    step fails the message stays PENDING (or QUEUED without an SQS message) and the reconciler
    finishes the job, so a fault here is logged, not raised. `as_stored`: `message` is the
    message exactly as the intake just stored it, so the QUEUED mark need not read it back (a
    listing's message, as the reconciler's, carries only what the index projects)."""
    store = store or default_store()
    queue = queue or default_queue()
    try:
        queue.send_for(message)
    except AWSUnavailable as error:
        logger.warning("message %s stays PENDING: %s", message.id, error)
        return message
    return _mark_queued(message, actor, reason, format_timestamp(clock.now()), store, as_stored)


def _mark_queued(
    message: Message, actor: str, reason: str, at: str, store: MessageStore, as_stored: bool
) -> Message:
    """PENDING -> QUEUED once the queue message is sent; a fault is logged, not raised."""
    entry = HistoryEntry(Status.PENDING, Status.QUEUED, at, actor, reason)
    try:
        marked = store.transition(
            message.id,
            producer_id=message.producer_id,
            expected=Status.PENDING,
            target=Status.QUEUED,
            entry=entry,
            known=message if as_stored else None,  # the PENDING guard vouches for the rest
        )
    except TransitionConflict as conflict:
        # A worker claimed it between our send and this update: it is on its way, which is success.
        marked = conflict.current or message
    except AWSUnavailable as error:
        logger.warning("message %s sent but not marked QUEUED: %s", message.id, error)
        return message
    # The transition wrote (and returned) the status item alone: the request is the one submitted.
    return replace(marked, request=message.request, request_loaded=message.request_loaded)


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
            producer_id=current.producer_id,
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


def move_next_attempt(*, message: Message, to: datetime, store: MessageStore) -> bool:
    """Move a waiting message's next_attempt_at to `to`, only if it is still where `message`
    saw it (status and next_attempt_at): of two actors racing to re-send the same message, one
    wins, and the other learns it lost (False)."""
    return store.reschedule(
        message.id,
        status=message.status,
        expected_next_attempt_at=message.next_attempt_at,
        next_attempt_at=format_timestamp(to),
    )
