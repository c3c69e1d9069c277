"""Recovery use cases: finish what a crash or an AWS fault left half done, and repair the
dashboard's counts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta

from notifications.aws import AWSUnavailable
from notifications.clock import Clock, system_clock
from notifications.domain import HistoryEntry, Message, Status, TransitionConflict, format_timestamp
from notifications.queue import WorkQueue, default_queue
from notifications.services.messages import message_enqueue, move_next_attempt
from notifications.store import MessageStore, default_store


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
                producer_id=message.producer_id,
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
            if not move_next_attempt(message=message, to=now, store=store):
                counts["skipped_changed_meanwhile"] += 1
                continue
            queue.send_for(message)
            counts["overdue_queued_resent"] += 1
        except AWSUnavailable:
            counts["errors"] += 1
    return counts


def status_counters_recount(*, store: MessageStore | None = None) -> dict[Status, int]:
    """Reset the dashboard's status counters to exact counts (after a lost counter update, or
    on a table that holds messages from before the counters). Reads every index item once; run
    it when traffic is low, since changes made while it runs can be missed."""
    return (store or default_store()).recount_status_counters()
