"""Acknowledgements: the worker's queue-message deletes and visibility changes, sent in batches.

SQS bills per request, and DeleteMessageBatch or ChangeMessageVisibilityBatch carry up to 10
entries for the price of one. The delivery threads hand their receipts to `Acknowledgements`
instead of calling SQS one message at a time:

- a full batch (10 pending entries of one kind) goes out at once, on the thread that filled it:
  under load every request is full and no entry waits, and the sending is spread over the
  delivery threads (one sending thread would become the bottleneck, and deletes queued behind it
  could outwait their visibility timeout);
- a partial batch goes out from a flusher thread once its oldest entry has waited
  `flush_seconds` (`WORKER_ACK_FLUSH_SECONDS`); the thread runs only while entries are pending;
- `close()`, the worker's last step before exit, sends everything still pending; after it,
  each entry is sent at once.

Why the interval is short (0.2 s by default). A delete that has not reached SQS by the end of its
queue message's visibility timeout lets the message be received again. The heartbeat stops
extending a queue message when its handling ends, when at least a third of the timeout is left
(20 s of the default 60), so the interval must stay far below that: settings cap it at a tenth
of the timeout. Within the cap, shorter costs more requests only for a worker that finishes fewer
than 10 messages per interval (50 a second at 0.2 s; above that the batches fill before the
interval ends), and that worker's bill is small anyway; it also bounds what a kill -9 loses: the
acknowledgements of the last 0.2 s, whose queue messages come back after the visibility timeout.

Nothing is lost when an acknowledgement fails: a queue message that is not deleted is received
again, and the claim's status guards make that harmless (a finished message's copy is dropped as
a duplicate, one not yet due is chained on, one under a live lease waits). So:
- an entry that failed on SQS's side (`SenderFault` false), or every entry of a request that
  failed as a whole (`AWSUnavailable` after botocore's own retries), is tried again with the next
  batch, `MAX_TRIES` times in all, then dropped with a warning;
- an entry SQS refused (`SenderFault` true: `ReceiptHandleIsInvalid` when the queue message is
  gone already or its receipt expired) is logged and dropped, as a single DeleteMessage's error
  was; the other entries of its request are not held up by it.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from dataclasses import dataclass

from notifications.aws import AWSUnavailable
from notifications.queue import BATCH_SIZE, BatchFailure, WorkQueue

logger = logging.getLogger(__name__)

DEFAULT_FLUSH_SECONDS = 0.2
# Tries per entry (each request is itself up to AWS_MAX_ATTEMPTS attempts inside botocore).
MAX_TRIES = 3


class Kind(enum.StrEnum):
    DELETE = "delete"
    VISIBILITY = "visibility change"


@dataclass
class _Entry:
    receipt_handle: str
    seconds: int  # the new visibility timeout (visibility changes only)
    added: float  # monotonic
    tries: int = 0


class Acknowledgements:
    """Deletes and visibility changes of queue messages, batched (see the module docstring).
    `delete` and `change_visibility` never raise (failures are retried or logged here) and call
    SQS themselves only to send a full batch, or, after `close`, at once."""

    def __init__(self, queue: WorkQueue, *, flush_seconds: float = DEFAULT_FLUSH_SECONDS) -> None:
        self.queue = queue
        self.flush_seconds = flush_seconds
        self._lock = threading.Condition()
        # Pending entries by kind, by receipt handle, oldest first (a newer entry for the same
        # handle replaces the older one and takes its place at the end).
        self._pending: dict[Kind, dict[str, _Entry]] = {kind: {} for kind in Kind}
        self._flusher: threading.Thread | None = None
        self._closed = False

    def delete(self, receipt_handle: str) -> None:
        """Delete a queue message (its message's outcome is stored: the work is done)."""
        self._add(Kind.DELETE, _Entry(receipt_handle, 0, time.monotonic()))

    def change_visibility(self, receipt_handle: str, seconds: int) -> None:
        """Make a queue message visible again in `seconds` (0: now)."""
        self._add(Kind.VISIBILITY, _Entry(receipt_handle, int(seconds), time.monotonic()))

    @property
    def pending(self) -> int:
        with self._lock:
            return sum(len(entries) for entries in self._pending.values())

    def flush(self) -> None:
        """Send everything pending now, on this thread, retries included (each entry at most
        MAX_TRIES times in all, so this ends)."""
        while True:
            with self._lock:
                batches = self._take_all()
            if not batches:
                return
            for kind, chunk in batches:
                self._send(kind, chunk)

    def close(self) -> None:
        """Send everything pending and stop the flusher thread (the worker's stop, after its
        deliveries drained). Entries that come later are sent at once."""
        with self._lock:
            self._closed = True
            flusher = self._flusher
            self._lock.notify_all()
        if flusher is not None:
            flusher.join()  # it may be sending; what it puts back for a retry is flushed below
        self.flush()

    # -- inside -----------------------------------------------------------------------------

    def _add(self, kind: Kind, entry: _Entry) -> None:
        with self._lock:
            self._put(kind, entry)
            closed = self._closed
            full: list[list[_Entry]] = []
            if not closed and len(self._pending[kind]) >= BATCH_SIZE:
                full = self._take(kind, BATCH_SIZE)
            if not closed:
                self._start_flusher()
        for chunk in full:
            self._send(kind, chunk)
        if closed:
            self.flush()  # no flusher runs any more

    def _put(self, kind: Kind, entry: _Entry) -> None:
        """Called with the lock held."""
        pending = self._pending[kind]
        pending.pop(entry.receipt_handle, None)
        pending[entry.receipt_handle] = entry

    def _take(self, kind: Kind, count: int) -> list[list[_Entry]]:
        """Remove up to `count` of the oldest entries of `kind`, in batches. Lock held."""
        pending = self._pending[kind]
        taken = [pending.pop(handle) for handle in list(pending)[:count]]
        return [taken[start : start + BATCH_SIZE] for start in range(0, len(taken), BATCH_SIZE)]

    def _take_all(self) -> list[tuple[Kind, list[_Entry]]]:
        """Remove every pending entry, in batches with their kind. Lock held."""
        return [
            (kind, chunk) for kind in Kind for chunk in self._take(kind, len(self._pending[kind]))
        ]

    def _oldest(self) -> float | None:
        """When the oldest pending entry was added. Lock held."""
        firsts = [
            next(iter(entries.values())).added for entries in self._pending.values() if entries
        ]
        return min(firsts) if firsts else None

    def _start_flusher(self) -> None:
        """Lock held."""
        if self._flusher is None and self._oldest() is not None:
            self._flusher = threading.Thread(target=self._flush_when_due, name="acks", daemon=True)
            self._flusher.start()

    def _flush_when_due(self) -> None:
        """The flusher thread: send partial batches once their oldest entry has waited
        `flush_seconds`; end when nothing is pending (or on close)."""
        try:
            self._flush_until_idle()
        except Exception:
            logger.exception("acknowledgements flusher failed; the next entry starts another")
            with self._lock:
                self._flusher = None

    def _flush_until_idle(self) -> None:
        while True:
            with self._lock:
                while True:
                    oldest = self._oldest()
                    if oldest is None or self._closed:
                        self._flusher = None
                        return
                    wait = oldest + self.flush_seconds - time.monotonic()
                    if wait <= 0:
                        break
                    self._lock.wait(wait)
                batches = self._take_all()
            for kind, chunk in batches:
                self._send(kind, chunk)

    def _send(self, kind: Kind, entries: list[_Entry]) -> None:
        """One batch request; what failed on SQS's side goes back for another try."""
        try:
            if kind == Kind.DELETE:
                failures = self.queue.delete_batch([e.receipt_handle for e in entries])
            else:
                failures = self.queue.change_visibility_batch(
                    [(e.receipt_handle, e.seconds) for e in entries]
                )
        except AWSUnavailable as error:
            self._retry(kind, entries, str(error))
            return
        by_handle = {entry.receipt_handle: entry for entry in entries}
        retry: list[_Entry] = []
        for failure in failures:
            entry = by_handle[failure.receipt_handle]
            if failure.sender_fault:
                self._drop(kind, failure)
            else:
                retry.append(entry)
        if retry:
            codes = sorted({f.code for f in failures if not f.sender_fault})
            self._retry(kind, retry, f"SQS {', '.join(codes)}")

    def _drop(self, kind: Kind, failure: BatchFailure) -> None:
        # ReceiptHandleIsInvalid: the queue message is gone already, or its receipt expired.
        logger.warning("queue message %s refused by SQS (%s); dropped", kind, failure.code)

    def _retry(self, kind: Kind, entries: list[_Entry], why: str) -> None:
        again = [entry for entry in entries if entry.tries + 1 < MAX_TRIES]
        given_up = len(entries) - len(again)
        if given_up:
            logger.warning(
                "%d queue message %s(s) not sent after %d tries (%s): SQS will deliver them "
                "again and the claim's status checks drop or wait for them",
                given_up,
                kind,
                MAX_TRIES,
                why,
            )
        if not again:
            return
        logger.info("%d queue message %s(s) failed (%s); trying again", len(again), kind, why)
        now = time.monotonic()
        with self._lock:
            for entry in again:
                if entry.receipt_handle not in self._pending[kind]:  # a newer entry wins
                    self._put(
                        kind, _Entry(entry.receipt_handle, entry.seconds, now, entry.tries + 1)
                    )
            if not self._closed:
                self._start_flusher()
