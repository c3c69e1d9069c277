"""The delivery worker: a consumer that long-polls SQS, a pool that delivers, a heartbeat that keeps
in-flight queue messages invisible, and a `stop()` that drains before exit.

A message whose host is at its per-host limit (or a retry while retries have their share of the
slots) waits in the worker's *waiting line* instead of going back to SQS: it keeps its queue
message (the heartbeat keeps it invisible), takes no delivery slot, and starts as soon as a slot
for it frees, in arrival order (roughly: a newly received message can take a freed slot first).
Waiting so costs no receive count and no AWS calls beyond the heartbeat's batched visibility
extensions (and a long waiter's next_attempt_at moving along now and then). Only when the
line is full (`max_waiting`), or when the worker runs synchronously (`handle()` from a test), is a
message deferred through SQS as a new queue message instead.

Only this loop decides what to do with a queue message; the use cases (claim, record) live in
`services`, the HTTP call in `delivery.http`, and the retry rules in `delivery.policy`/`backoff`.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import timedelta

from django.conf import settings

from notifications import services
from notifications.aws import AWSUnavailable
from notifications.clock import Clock, system_clock
from notifications.delivery.addresses import AddressPolicy
from notifications.delivery.admission import Admission, Ticket
from notifications.delivery.backoff import RetrySchedule, parse_schedule
from notifications.delivery.http import DeliveryClient
from notifications.delivery.policy import OutcomePolicy, parse_status_set
from notifications.domain import (
    Message,
    Status,
    format_timestamp,
    parse_timestamp,
)
from notifications.queue import MAX_DELAY_SECONDS, QueuedWork, WorkQueue, default_queue
from notifications.selectors import SigningSecretCache
from notifications.services import ClaimState
from notifications.signing import signature_headers
from notifications.store import MessageStore, default_store

logger = logging.getLogger(__name__)


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class _InFlight:
    work: QueuedWork
    visible_until: float


@dataclass(frozen=True)
class _Held:
    """What admission refused: the host and retry flag it decided on, and the message when the
    claim read it (a claim refused on the queue message's hint reads nothing)."""

    host: str
    retry: bool
    message: Message | None


@dataclass
class _Waiting:
    """A message held back by admission, keeping its queue message."""

    work: QueuedWork
    held: _Held
    visible_until: float
    fresh_until: float  # when its next_attempt_at must move on, so reconcile does not re-send it


# Statuses a message can wait in (anything else: another copy of its queue message got it).
WAITING_STATUSES = frozenset({Status.QUEUED, Status.PENDING})


class Worker:
    def __init__(
        self,
        *,
        concurrency: int,
        poll_seconds: int,
        lease_seconds: float,
        visibility_timeout: int,
        shutdown_grace: float,
        client: DeliveryClient,
        policy: OutcomePolicy,
        schedule: RetrySchedule,
        store: MessageStore,
        queue: WorkQueue,
        admission: Admission | None = None,
        signing_secrets: SigningSecretCache | None = None,
        clock: Clock = system_clock,
        worker_id: str | None = None,
        max_waiting: int = 0,
        waiting_refresh_seconds: float = 60.0,
    ) -> None:
        self.concurrency = concurrency
        self.poll_seconds = poll_seconds
        self.lease_seconds = lease_seconds
        self.visibility_timeout = visibility_timeout
        self.shutdown_grace = shutdown_grace
        self.client = client
        self.policy = policy
        self.schedule = schedule
        self.store = store
        self.queue = queue
        self.admission = admission or Admission(max_per_host=concurrency, max_retries=concurrency)
        self.signing_secrets = signing_secrets or SigningSecretCache(ttl_seconds=30.0)
        self.clock = clock
        self.worker_id = worker_id or default_worker_id()
        self._stopping = threading.Event()
        self._changed = threading.Condition()
        self._in_flight: dict[str, _InFlight] = {}
        self.max_waiting = max_waiting
        self.waiting_refresh_seconds = waiting_refresh_seconds
        self._waiting: dict[str, _Waiting] = {}  # in arrival order
        self._pool: ThreadPoolExecutor | None = None  # set while run() runs

    @classmethod
    def from_settings(cls, *, concurrency: int | None = None) -> Worker:
        concurrency = concurrency or settings.WORKER_CONCURRENCY
        return cls(
            concurrency=concurrency,
            poll_seconds=settings.WORKER_POLL_SECONDS,
            lease_seconds=settings.DELIVERY_LEASE_SECONDS,
            visibility_timeout=settings.SQS_VISIBILITY_TIMEOUT,
            shutdown_grace=settings.WORKER_SHUTDOWN_GRACE,
            client=DeliveryClient(
                connect_timeout=settings.DELIVERY_CONNECT_TIMEOUT,
                total_timeout=settings.DELIVERY_TIMEOUT,
                pool_size=concurrency,
                address_policy=AddressPolicy.from_cidrs(settings.DELIVERY_ALLOWED_NETWORKS),
                ca_certs=settings.DELIVERY_CA_BUNDLE,
            ),
            admission=Admission(
                max_per_host=settings.DELIVERY_MAX_PER_HOST,
                max_retries=max(1, int(concurrency * settings.WORKER_RETRY_SHARE)),
            ),
            signing_secrets=SigningSecretCache(ttl_seconds=settings.SIGNING_SECRET_CACHE_SECONDS),
            policy=OutcomePolicy(parse_status_set(settings.DELIVERY_RETRYABLE_STATUSES)),
            schedule=RetrySchedule(
                delays=parse_schedule(settings.RETRY_SCHEDULE),
                max_attempts=settings.RETRY_MAX_ATTEMPTS,
                max_age_seconds=settings.RETRY_MAX_AGE,
                jitter=settings.RETRY_JITTER,
            ),
            store=default_store(),
            queue=default_queue(),
            max_waiting=settings.WORKER_MAX_WAITING,
            # Well inside the reconciler's threshold for a QUEUED message it takes for lost.
            waiting_refresh_seconds=max(5.0, settings.RECONCILE_OLDER_THAN / 3),
        )

    # -- lifecycle --------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop receiving; deliveries in flight finish (up to the grace period)."""
        self._stopping.set()
        with self._changed:
            self._changed.notify_all()

    @property
    def in_flight(self) -> int:
        with self._changed:
            return len(self._in_flight)

    @property
    def waiting(self) -> int:
        with self._changed:
            return len(self._waiting)

    def run(self) -> bool:
        """Consume until `stop()`. Returns True when every in-flight delivery finished."""
        logger.info("worker %s started, concurrency %d", self.worker_id, self.concurrency)
        heartbeat = threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True)
        heartbeat.start()
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="delivery")
        with self._changed:
            self._pool = pool
        failures = 0
        try:
            while not self._stopping.is_set():
                free = self._wait_for_free_slot()
                if free == 0:
                    continue
                try:
                    batch = self.queue.receive(
                        max_messages=free,
                        wait_seconds=self.poll_seconds,
                        visibility_timeout=self.visibility_timeout,
                    )
                    failures = 0
                except AWSUnavailable as error:
                    failures += 1
                    logger.warning("receive failed (%s); backing off", error)
                    self._stopping.wait(min(30.0, 0.5 * 2**failures))
                    continue
                if self._stopping.is_set():
                    self._release(batch)
                    break
                for work in batch:
                    with self._changed:
                        self._in_flight[work.receipt_handle] = _InFlight(
                            work, time.monotonic() + self.visibility_timeout
                        )
                    pool.submit(self._process, work)
        finally:
            self._stopping.set()  # also when the loop ended with an exception
            drained = self._drain()
            pool.shutdown(wait=drained, cancel_futures=True)
            self._hand_back_waiting()
            self.store.flush_statistics()
        logger.info("worker %s stopped (%s)", self.worker_id, "drained" if drained else "timed out")
        return drained

    def _wait_for_free_slot(self) -> int:
        with self._changed:
            free = self.concurrency - len(self._in_flight)
            if free <= 0:
                self._changed.wait(timeout=0.5)
                return 0
            return min(free, 10)

    def _drain(self) -> bool:
        deadline = time.monotonic() + self.shutdown_grace
        with self._changed:
            while self._in_flight and time.monotonic() < deadline:
                self._changed.wait(timeout=max(0.05, deadline - time.monotonic()))
            return not self._in_flight

    def _release(self, batch: list[QueuedWork]) -> None:
        """Hand messages received during shutdown straight back to the queue."""
        for work in batch:
            try:
                self.queue.change_visibility(work.receipt_handle, 0)
            except AWSUnavailable:
                pass  # it becomes visible again when its visibility timeout ends

    def _process(self, work: QueuedWork, reserved: Ticket | None = None) -> None:
        held: list[_Held] = []

        def wait_in_line(refused: _Held) -> bool:
            # Room in the line? The move itself happens below, together with freeing the slot,
            # so no other thread can start the message while this one still holds its slot.
            with self._changed:
                if self._stopping.is_set() or len(self._waiting) >= self.max_waiting:
                    return False
            held.append(refused)
            return True

        try:
            self.handle(work, reserved=reserved, wait_in_line=wait_in_line)
        except Exception:
            # The queue message stays; it comes back after its visibility timeout.
            logger.exception("delivery of queue message for %s failed", work.message_id)
        finally:
            with self._changed:
                entry = self._in_flight.pop(work.receipt_handle, None)
                if held:
                    self._waiting[work.receipt_handle] = _Waiting(
                        work,
                        held[0],
                        entry.visible_until if entry else time.monotonic(),
                        time.monotonic() + self._fresh_for(held[0]),
                    )
                self._start_waiting()
                self._changed.notify_all()

    # -- the waiting line -------------------------------------------------------------------

    def _fresh_for(self, held: _Held) -> float:
        """Seconds until a waiting message's next_attempt_at is old enough to move along (not
        read: it came off the queue just now, so it was due about now)."""
        message = held.message
        if message is None:
            return self.waiting_refresh_seconds / 2
        since = message.next_attempt_at or message.updated_at
        age = (self.clock.now() - parse_timestamp(since)).total_seconds()
        return max(0.0, self.waiting_refresh_seconds - age)

    def _start_waiting(self) -> None:
        """Start waiting messages that admission now lets through, oldest first, while slots
        are free. Called with `_changed` held, whenever a slot frees."""
        if self._pool is None or self._stopping.is_set():
            return
        for receipt, waiting in list(self._waiting.items()):
            if len(self._in_flight) >= self.concurrency:
                return
            ticket = self.admission.try_admit(waiting.held.host, retry=waiting.held.retry)
            if ticket is None:
                continue
            try:
                # It cannot finish before the bookkeeping below: that needs the lock held here.
                self._pool.submit(self._process, waiting.work, ticket)
            except RuntimeError:  # the pool is shutting down
                self.admission.release(ticket)
                return
            del self._waiting[receipt]
            self._in_flight[receipt] = _InFlight(waiting.work, waiting.visible_until)

    def _refresh_waiting(self) -> None:
        """Keep long-waiting messages' next_attempt_at recent (heartbeat), so the reconciler
        does not take a message that waits here for one whose queue message was lost. A waiter
        that turns out not to be claimable (not due yet — held on its queue message's hint
        before anything was read —, claimed through another copy, finished, gone) leaves the
        line and is handled as its claim would have handled it. Stops at the first AWS fault:
        the heartbeat must not be held up by a struggling DynamoDB."""
        now = time.monotonic()
        with self._changed:
            stale = [(r, w) for r, w in self._waiting.items() if w.fresh_until <= now]
        for receipt, waiting in stale:
            message_id = waiting.work.message_id
            assert message_id is not None
            moment = self.clock.now()
            stamp = format_timestamp(moment)
            try:
                message = waiting.held.message or self.store.get(message_id)
                blocked = services.claim_blocker(message, moment)
                if blocked is None and message is not None and message.status in WAITING_STATUSES:
                    if self.store.reschedule(
                        message_id,
                        status=message.status,
                        expected_next_attempt_at=message.next_attempt_at,
                        next_attempt_at=stamp,
                    ):
                        moved = replace(message, next_attempt_at=stamp)
                        waiting.held = replace(waiting.held, message=moved)
                        waiting.fresh_until = now + self.waiting_refresh_seconds
                        continue
                    message = self.store.get(message_id)  # changed meanwhile (a reconciler)
                    blocked = services.claim_blocker(message, moment)
            except AWSUnavailable as error:
                logger.warning("could not refresh waiting message %s: %s", message_id, error)
                return
            if blocked is None:  # claimable: look again next tick (an expired lease: later)
                waiting.held = replace(waiting.held, message=message)
                if message is not None and message.status not in WAITING_STATUSES:
                    waiting.fresh_until = now + self.waiting_refresh_seconds
                continue
            with self._changed:
                left = self._waiting.pop(receipt, None)
            if left is not None:
                try:
                    self._not_claimed(left.work, blocked, None)
                except AWSUnavailable:
                    pass  # its queue message comes back, and its claim then decides

    def _hand_back_waiting(self) -> None:
        """On exit, give each waiting message back as a new queue message (a new message, so
        the wait does not spend its receive count)."""
        with self._changed:
            waiting, self._waiting = list(self._waiting.values()), {}
            self._pool = None
        for entry in waiting:
            message_id = entry.work.message_id
            assert message_id is not None
            try:
                self.queue.send(message_id, host=entry.held.host, retry=entry.held.retry)
                self.queue.delete(entry.work.receipt_handle)
            except AWSUnavailable as error:
                # It comes back when its visibility timeout ends.
                logger.warning("could not hand back %s: %s", message_id, error)
        if waiting:
            logger.info("handed %d waiting messages back to the queue", len(waiting))

    def _heartbeat(self) -> None:
        interval = max(1.0, self.visibility_timeout / 3)
        while True:
            if self._stopping.wait(interval):
                if not self.in_flight and not self.waiting:
                    return
                time.sleep(interval)  # draining: keep extending, without spinning
            now = time.monotonic()
            with self._changed:
                self._start_waiting()  # a safety net; slots normally start them as they free
                held = [*self._in_flight.values(), *self._waiting.values()]
                due = [f for f in held if f.visible_until - now < 2 * interval]
            if due:
                try:
                    self.queue.extend_visibility(
                        [f.work.receipt_handle for f in due], self.visibility_timeout
                    )
                except AWSUnavailable as error:
                    logger.warning("could not extend visibility: %s", error)
                else:
                    for entry in due:
                        entry.visible_until = now + self.visibility_timeout
            self._refresh_waiting()  # after the extension, which matters more

    # -- one queue message ------------------------------------------------------------------

    def handle(
        self,
        work: QueuedWork,
        *,
        reserved: Ticket | None = None,
        wait_in_line: Callable[[_Held], bool] | None = None,
    ) -> str:
        """Process one queue message; returns what happened (for logs and tests).

        `reserved` is an admission ticket already taken for it (a message leaving the waiting
        line). `wait_in_line`, asked when admission refuses the message, takes it into the
        waiting line (True) instead of deferring it through SQS."""
        if work.message_id is None:
            # Left in the queue on purpose: after SQS_MAX_RECEIVE_COUNT receives SQS moves it to
            # the dead-letter queue instead of it looping forever.
            logger.error("undecodable queue message (receive %d)", work.receive_count)
            return "undecodable"
        tickets: list[Ticket] = [reserved] if reserved is not None else []

        def admit(host: str, retry: bool) -> bool:
            if not tickets:  # asked again after a lost race: keep the slot already taken
                ticket = self.admission.try_admit(host, retry=retry)
                if ticket is None:
                    return False
                tickets.append(ticket)
            return True

        try:
            claim = services.delivery_claim(
                message_id=work.message_id,
                worker_id=self.worker_id,
                lease_seconds=self.lease_seconds,
                admit=admit,
                host_hint=work.host,
                retry_hint=work.retry,
                store=self.store,
                clock=self.clock,
            )
        except BaseException:
            for ticket in tickets:  # an AWS fault after admission must not leak the slot
                self.admission.release(ticket)
            raise
        if claim.state != ClaimState.CLAIMED:
            for ticket in tickets:
                self.admission.release(ticket)
            return self._not_claimed(work, claim, wait_in_line)
        started = time.monotonic()
        try:
            return self._deliver(work, claim.message)
        finally:
            self.admission.release(tickets[0], seconds=time.monotonic() - started)

    def _not_claimed(
        self,
        work: QueuedWork,
        claim: services.ClaimResult,
        wait_in_line: Callable[[_Held], bool] | None,
    ) -> str:
        if claim.state == ClaimState.MISSING:
            logger.error("queue message for unknown message %s", work.message_id)
            return "missing"
        if claim.state == ClaimState.FINISHED:
            self.queue.delete(work.receipt_handle)  # a duplicate: the work is done
            return "duplicate"
        if claim.state == ClaimState.BUSY:
            # Another worker holds a live lease. Come back when it ends: by then the message is
            # finished (and this copy is dropped) or the lease expired (and this copy re-claims).
            self.queue.change_visibility(work.receipt_handle, math.ceil(claim.wait_seconds) + 1)
            return "busy"
        if claim.state == ClaimState.NOT_DUE:
            # SQS delays stop at 15 minutes: chain a fresh queue message for the rest of the wait
            # (a new message, so the wait does not spend the receive count meant for poison).
            assert claim.message is not None
            self.queue.send_for(
                claim.message,
                delay_seconds=min(math.ceil(claim.wait_seconds), MAX_DELAY_SECONDS),
            )
            self.queue.delete(work.receipt_handle)
            return "not_due"
        # DEFERRED: its host is at its limit, or retries have their share. Wait in line here,
        # or, when the line is full, look again later with a new queue message (so the wait
        # does not spend the receive count).
        message = claim.message
        if message is not None:
            refused = _Held(message.request.host, message.attempt_count > 0, message)
        else:  # refused on the queue message's hint, before anything was read
            assert work.host is not None
            refused = _Held(work.host, work.retry, None)
        if wait_in_line is not None and wait_in_line(refused):
            return "waiting"
        if message is None:  # refused on the hint: see what it is before deferring it
            message = self.store.get(work.message_id)
            blocked = services.claim_blocker(message, self.clock.now())
            if blocked is not None:
                return self._not_claimed(work, blocked, None)
            assert message is not None
        host = message.request.host
        with self._changed:
            ahead = sum(1 for w in self._waiting.values() if w.held.host == host)
        delay = math.ceil(self.admission.defer_seconds(host, ahead=ahead))
        # Move next_attempt_at along, so the reconciler does not take a waiting message for one
        # whose queue message was lost.
        self.store.reschedule(
            message.id,
            status=message.status,
            expected_next_attempt_at=message.next_attempt_at,
            next_attempt_at=format_timestamp(self.clock.now() + timedelta(seconds=delay)),
        )
        self.queue.send_for(message, delay_seconds=delay)
        self.queue.delete(work.receipt_handle)
        return "deferred"

    def _deliver(self, work: QueuedWork, message: Message) -> str:
        if message.budget_attempts > self.schedule.max_attempts:
            services.delivery_give_up(
                claim=message,
                worker_id=self.worker_id,
                reason=f"retry budget spent ({self.schedule.max_attempts} attempts)",
                store=self.store,
                clock=self.clock,
            )
            self.queue.delete(work.receipt_handle)
            return "failed"
        started = self.clock.now()
        signatures = signature_headers(
            self.signing_secrets.get(message.producer_id),
            message.id,
            int(started.timestamp()),
            message.request.body,
        )
        result = self.client.send(message.request, message.id, signatures)
        outcome = services.delivery_record(
            claim=message,
            result=result,
            started_at=started,
            worker_id=self.worker_id,
            policy=self.policy,
            schedule=self.schedule,
            store=self.store,
            queue=self.queue,
            clock=self.clock,
        )
        # Only now that the outcome is stored may the queue message go.
        self.queue.delete(work.receipt_handle)
        if outcome.message is None:
            return "lease_lost"
        return outcome.message.status.value.lower()
