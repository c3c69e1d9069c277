"""The delivery worker: a consumer that long-polls SQS, a pool that delivers, a heartbeat that keeps
in-flight queue messages invisible, and a `stop()` that drains before exit.

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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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
from notifications.domain import Message, format_timestamp
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

    def run(self) -> bool:
        """Consume until `stop()`. Returns True when every in-flight delivery finished."""
        logger.info("worker %s started, concurrency %d", self.worker_id, self.concurrency)
        heartbeat = threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True)
        heartbeat.start()
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="delivery")
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
            drained = self._drain()
            pool.shutdown(wait=drained, cancel_futures=True)
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

    def _process(self, work: QueuedWork) -> None:
        try:
            self.handle(work)
        except Exception:
            # The queue message stays; it comes back after its visibility timeout.
            logger.exception("delivery of queue message for %s failed", work.message_id)
        finally:
            with self._changed:
                self._in_flight.pop(work.receipt_handle, None)
                self._changed.notify_all()

    def _heartbeat(self) -> None:
        interval = max(1.0, self.visibility_timeout / 3)
        while True:
            if self._stopping.wait(interval):
                if not self.in_flight:
                    return
                time.sleep(interval)  # draining: keep extending, without spinning
            now = time.monotonic()
            with self._changed:
                due = [f for f in self._in_flight.values() if f.visible_until - now < 2 * interval]
            if not due:
                continue
            try:
                self.queue.extend_visibility(
                    [f.work.receipt_handle for f in due], self.visibility_timeout
                )
            except AWSUnavailable as error:
                logger.warning("could not extend visibility: %s", error)
                continue
            for entry in due:
                entry.visible_until = now + self.visibility_timeout

    # -- one queue message ------------------------------------------------------------------

    def handle(self, work: QueuedWork) -> str:
        """Process one queue message; returns what happened (for logs and tests)."""
        if work.message_id is None:
            # Left in the queue on purpose: after SQS_MAX_RECEIVE_COUNT receives SQS moves it to
            # the dead-letter queue instead of it looping forever.
            logger.error("undecodable queue message (receive %d)", work.receive_count)
            return "undecodable"
        tickets: list[Ticket] = []

        def admit(candidate: Message) -> bool:
            if not tickets:  # asked again after a lost race: keep the slot already taken
                retry = candidate.attempt_count > 0
                ticket = self.admission.try_admit(candidate.request.host, retry=retry)
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
            return self._not_claimed(work, claim)
        started = time.monotonic()
        try:
            return self._deliver(work, claim.message)
        finally:
            self.admission.release(tickets[0], seconds=time.monotonic() - started)

    def _not_claimed(self, work: QueuedWork, claim: services.ClaimResult) -> str:
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
            self.queue.send(
                work.message_id, delay_seconds=min(math.ceil(claim.wait_seconds), MAX_DELAY_SECONDS)
            )
            self.queue.delete(work.receipt_handle)
            return "not_due"
        # DEFERRED: its host is at its limit, or retries have their share. Look again later with
        # a new queue message (so the wait does not spend the receive count).
        message = claim.message
        assert message is not None
        delay = math.ceil(self.admission.defer_seconds(message.request.host))
        # Move next_attempt_at along, so the reconciler does not take a waiting message for one
        # whose queue message was lost.
        self.store.reschedule(
            message.id,
            status=message.status,
            expected_next_attempt_at=message.next_attempt_at,
            next_attempt_at=format_timestamp(self.clock.now() + timedelta(seconds=delay)),
        )
        self.queue.send(message.id, delay_seconds=delay)
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
