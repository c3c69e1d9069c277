"""The worker's receive loop: a consumer that long-polls SQS, a pool that delivers, a heartbeat
that keeps queue messages invisible while they are delivered or wait in line, and a `stop()` that
drains before exit. Deletes and visibility changes of single queue messages go through the
worker's `Acknowledgements` (batched, `worker.acks`), which the stop flushes last.

In-flight deliveries are guarded by one condition (`_slots`): a slot frees when a delivery ends,
and that is when waiting messages are started (`WaitingLine.start_ready`); so is a change the host
guard saw (`delivery.host_guard`: a share of a host's limit, rate tokens, a probe, a closed
circuit, a resumed host), whose refresher thread runs beside the loop. When the line is full
(`max_waiting`), or when a message is handled synchronously (`handle()` from a test), a message
held back by admission is deferred through SQS as a new queue message instead.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from django.conf import settings

from notifications import selectors, services
from notifications.aws import AWSUnavailable
from notifications.clock import Clock, system_clock
from notifications.delivery.admission import Admission, Ticket
from notifications.delivery.allowed_networks import allowed_networks_policy
from notifications.delivery.backoff import RetrySchedule, parse_schedule
from notifications.delivery.host_guard import HostGuard
from notifications.delivery.http import DeliveryClient
from notifications.delivery.policy import OutcomePolicy, parse_status_set
from notifications.domain import parse_timestamp
from notifications.logs import log_fields
from notifications.queue import BATCH_SIZE, QueuedWork, WorkQueue, default_queue
from notifications.selectors import ProducerCache
from notifications.store import MessageStore, default_store
from notifications.worker.acks import DEFAULT_FLUSH_SECONDS, Acknowledgements
from notifications.worker.handling import MessageHandling
from notifications.worker.waiting import Refusal, Waiter, WaitingLine

logger = logging.getLogger(__name__)


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class _InFlight:
    work: QueuedWork
    visible_until: float  # monotonic


class Worker(MessageHandling):
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
        producers: ProducerCache | None = None,
        clock: Clock = system_clock,
        worker_id: str | None = None,
        max_waiting: int = 0,
        waiting_refresh_seconds: float = 60.0,
        hold_seconds: int = 300,
        ack_flush_seconds: float = DEFAULT_FLUSH_SECONDS,
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
        self.acks = Acknowledgements(queue, flush_seconds=ack_flush_seconds)
        self.admission = admission or Admission(max_per_host=concurrency, max_retries=concurrency)
        self.producers = producers or ProducerCache(ttl_seconds=30.0)
        self.hold_seconds = hold_seconds
        self.clock = clock
        self.worker_id = worker_id or default_worker_id()
        self.line = WaitingLine(capacity=max_waiting)
        self.hosts = self.admission.hosts
        if self.hosts is not None:
            self.hosts.attach(waiting_for=self.line.ahead_for, on_change=self._wake_waiting)
        self.waiting_refresh_seconds = waiting_refresh_seconds
        self._stopping = threading.Event()
        self._slots = threading.Condition()  # guards _in_flight and _pool
        self._backlog = False  # the last receive came back full
        self._in_flight: dict[str, _InFlight] = {}  # by receipt handle
        self._pool: ThreadPoolExecutor | None = None  # set while run() runs
        # Progress marks (monotonic) of the receive loop and the heartbeat, for `is_live`.
        self._loop_progress = self._heartbeat_progress = time.monotonic()

    @classmethod
    def from_settings(cls, *, concurrency: int | None = None) -> Worker:
        concurrency = concurrency or settings.WORKER_CONCURRENCY
        worker_id = default_worker_id()
        store = default_store()
        hosts = HostGuard(
            states=store.hosts,
            allowances=store.allowances,
            load_policies=selectors.host_policies,
            defaults=selectors.default_host_limits(),
            worker_id=worker_id,
            refresh_seconds=settings.HOST_STATE_REFRESH_SECONDS,
            slot_lease_seconds=settings.HOST_SLOT_LEASE_SECONDS,
            # A probe's call may last DELIVERY_TIMEOUT; only then may another worker take over.
            probe_lease_seconds=settings.DELIVERY_TIMEOUT + 10,
        )
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
                address_policy=allowed_networks_policy(),
                ca_certs=settings.DELIVERY_CA_BUNDLE,
            ),
            admission=Admission(
                max_per_host=settings.DELIVERY_MAX_PER_HOST,
                max_retries=max(1, int(concurrency * settings.WORKER_RETRY_SHARE)),
                max_per_producer=max(1, int(concurrency * settings.WORKER_PRODUCER_SHARE)),
                hosts=hosts,
            ),
            producers=ProducerCache(ttl_seconds=settings.PRODUCER_CACHE_SECONDS),
            hold_seconds=settings.DELIVERY_HOLD_SECONDS,
            policy=OutcomePolicy(parse_status_set(settings.DELIVERY_RETRYABLE_STATUSES)),
            schedule=RetrySchedule(
                delays=parse_schedule(settings.RETRY_SCHEDULE),
                max_attempts=settings.RETRY_MAX_ATTEMPTS,
                max_age_seconds=settings.RETRY_MAX_AGE,
                jitter=settings.RETRY_JITTER,
            ),
            store=store,
            queue=default_queue(),
            worker_id=worker_id,
            max_waiting=settings.WORKER_MAX_WAITING,
            # Well inside the reconciler's threshold for a QUEUED message it takes for lost.
            waiting_refresh_seconds=max(5.0, settings.RECONCILE_OLDER_THAN / 3),
            ack_flush_seconds=settings.WORKER_ACK_FLUSH_SECONDS,
        )

    # -- lifecycle --------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop receiving; deliveries in flight finish (up to the grace period). Safe from any
        thread, but not from a signal handler (it takes locks): see `stop_signals`."""
        self._stopping.set()
        with self._slots:
            self._slots.notify_all()

    @property
    def in_flight(self) -> int:
        with self._slots:
            return len(self._in_flight)

    @property
    def waiting(self) -> int:
        return len(self.line)

    @property
    def heartbeat_interval(self) -> float:
        return max(1.0, self.visibility_timeout / 3)

    def is_live(self) -> bool:
        """Whether the receive loop and the heartbeat both made progress lately (an orchestrator
        restarts a worker that answers no to /livez). A pass of the loop takes at most a long
        poll (plus AWS's read timeout and retries); a pass of the heartbeat at most its interval
        (plus its AWS calls): twice that and a minute more is a stall."""
        allowed = 2 * (self.poll_seconds + self.heartbeat_interval) + 60
        now = time.monotonic()
        return now - self._loop_progress < allowed and now - self._heartbeat_progress < allowed

    def run(self) -> bool:
        """Consume until `stop()`. Returns True when every in-flight delivery finished."""
        logger.info("worker %s started, concurrency %d", self.worker_id, self.concurrency)
        heartbeat = threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True)
        heartbeat.start()
        if self.hosts is not None:
            self.hosts.start()
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="delivery")
        with self._slots:
            self._pool = pool
        failures = 0
        try:
            while not self._stopping.is_set():
                self._loop_progress = time.monotonic()
                free = self._wait_for_free_slot()
                if free == 0:
                    continue
                try:
                    batch = self.queue.receive(
                        max_messages=free,
                        wait_seconds=self.poll_seconds,
                        visibility_timeout=self.visibility_timeout,
                    )
                    self._backlog = len(batch) >= free
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
                    with self._slots:
                        self._in_flight[work.receipt_handle] = _InFlight(
                            work, time.monotonic() + self.visibility_timeout
                        )
                    pool.submit(self._process, work)
        finally:
            self._stopping.set()  # also when the loop ended with an exception
            drained = self._drain()
            pool.shutdown(wait=drained, cancel_futures=True)
            self._hand_back_waiting()
            if self.hosts is not None:
                self.hosts.stop()  # gives back this worker's shares of hosts' limits
            # Last: every delete and visibility change of the run reaches SQS before exit (the
            # hand-back's deletes included).
            self.acks.close()
            self.store.flush_statistics()
        logger.info("worker %s stopped (%s)", self.worker_id, "drained" if drained else "timed out")
        return drained

    # While the queue has a backlog, how long a free slot waits for others to free up, so that
    # one ReceiveMessage takes a full batch instead of one message a call.
    BATCH_WAIT_SECONDS = 0.1

    def _free_slots(self) -> int:
        return self.concurrency - len(self._in_flight)  # under self._slots

    def _wait_for_free_slot(self) -> int:
        with self._slots:
            free = self._free_slots()
            if free <= 0:
                self._slots.wait(timeout=0.5)
                return 0
            wanted = min(BATCH_SIZE, self.concurrency)
            if self._backlog and free < wanted:
                # The last receive came back full: more is waiting in the queue. A slot or two
                # just freed would fetch a message or two per call; a moment later most of a
                # batch has freed (at load, calls end every few milliseconds).
                self._slots.wait_for(
                    lambda: self._free_slots() >= wanted or self._stopping.is_set(),
                    timeout=self.BATCH_WAIT_SECONDS,
                )
                free = self._free_slots()
            return min(free, BATCH_SIZE)

    def _drain(self) -> bool:
        deadline = time.monotonic() + self.shutdown_grace
        with self._slots:
            while self._in_flight and time.monotonic() < deadline:
                self._slots.wait(timeout=max(0.05, deadline - time.monotonic()))
            return not self._in_flight

    def _release(self, batch: list[QueuedWork]) -> None:
        """Hand messages received during shutdown straight back to the queue (within the flush
        interval: the acknowledgements' flusher runs during the drain). Should that fail, each
        becomes visible again when its visibility timeout ends."""
        for work in batch:
            self.acks.change_visibility(work.receipt_handle, 0)

    def _process(self, work: QueuedWork, reserved: Ticket | None = None) -> None:
        refusals: list[Refusal] = []

        def wait_in_line(refusal: Refusal) -> bool:
            # Room in the line? The move itself happens below, together with freeing the slot,
            # so no other thread can start the message while this one still holds its slot.
            if self._stopping.is_set() or not self.line.has_room():
                return False
            refusals.append(refusal)
            return True

        try:
            self.handle(work, reserved=reserved, wait_in_line=wait_in_line)
        except AWSUnavailable as error:
            # The queue message stays; it comes back after its visibility timeout.
            logger.warning(
                "queue message for %s left for later: %s",
                work.message_id,
                error,
                extra=log_fields(message_id=work.message_id, outcome="aws_unavailable"),
            )
        except Exception:
            logger.exception("delivery of queue message for %s failed", work.message_id)
        finally:
            with self._slots:
                entry = self._in_flight.pop(work.receipt_handle, None)
                if refusals:
                    now = time.monotonic()
                    self.line.add(
                        Waiter(
                            work,
                            refusals[0],
                            entry.visible_until if entry else now,
                            now + self._fresh_for(refusals[0]),
                        )
                    )
                self._start_waiting()
                self._slots.notify_all()

    # -- the waiting line -------------------------------------------------------------------

    def _fresh_for(self, refusal: Refusal) -> float:
        """Seconds until a waiting message's next_attempt_at is old enough to move along (not
        read: it came off the queue just now, so it was due about now)."""
        message = refusal.message
        if message is None:
            return self.waiting_refresh_seconds / 2
        since = message.next_attempt_at or message.updated_at
        age = (self.clock.now() - parse_timestamp(since)).total_seconds()
        return max(0.0, self.waiting_refresh_seconds - age)

    def _wake_waiting(self) -> None:
        """The host guard saw a change that may let waiting messages go."""
        with self._slots:
            self._start_waiting()
            self._slots.notify_all()

    def _start_waiting(self) -> None:
        """Start waiting messages that admission now lets through, while slots are free.
        Called with `_slots` held, whenever a slot frees."""
        pool = self._pool
        if pool is None or self._stopping.is_set():
            return

        def start(waiter: Waiter, ticket: Ticket) -> bool:
            try:
                # It cannot finish before the bookkeeping below: that needs `_slots`, held here.
                pool.submit(self._process, waiter.work, ticket)
            except RuntimeError:  # the pool is shutting down
                self.admission.release(ticket)
                return False
            receipt = waiter.work.receipt_handle
            self._in_flight[receipt] = _InFlight(waiter.work, waiter.visible_until)
            return True

        self.line.start_ready(
            slots=self.concurrency - len(self._in_flight),
            admit=lambda candidate: self.admission.try_admit(
                candidate.host, is_retry=candidate.is_retry, producer=candidate.producer
            ),
            start=start,
        )

    def _refresh_waiting(self) -> None:
        """Keep long-waiting messages' next_attempt_at recent (heartbeat), so the reconciler does
        not take a message that waits here for one whose queue message was lost. A waiter that is
        no longer claimable leaves the line and is handled as its claim would have handled it.
        Stops at the first AWS fault: the heartbeat must not be held up by a struggling DynamoDB."""
        now = time.monotonic()
        for waiter in self.line.due_for_refresh(now):
            receipt, message_id = waiter.work.receipt_handle, waiter.work.message_id
            assert message_id is not None
            try:
                check = services.delivery_wait_refresh(
                    message_id=message_id,
                    known=waiter.refusal.message,
                    store=self.store,
                    clock=self.clock,
                )
            except AWSUnavailable as error:
                logger.warning("could not refresh waiting message %s: %s", message_id, error)
                return
            if check.blocked is None:  # still waits (claimable now: it is looked at next tick)
                later = now + self.waiting_refresh_seconds
                moves_on = check.refreshed or (
                    check.message is not None
                    and check.message.status not in services.WAITING_STATUSES
                )
                self.line.update(receipt, check.message, fresh_until=later if moves_on else None)
                continue
            left = self.line.remove(receipt)
            if left is not None:
                try:
                    self.not_claimed(left.work, check.blocked, None)
                except AWSUnavailable:
                    pass  # its queue message comes back, and its claim then decides

    def _hand_back_waiting(self) -> None:
        """On exit, give each waiting message back as a new queue message (a new message, so
        the wait does not spend its receive count)."""
        with self._slots:
            self._pool = None
        waiters = self.line.take_all()
        for waiter in waiters:
            message_id = waiter.work.message_id
            assert message_id is not None
            try:
                candidate = waiter.refusal.candidate
                self.queue.send(
                    message_id,
                    host=candidate.host,
                    is_retry=candidate.is_retry,
                    producer=candidate.producer,
                )
                self.acks.delete(waiter.work.receipt_handle)  # after the send: never a loss
            except AWSUnavailable as error:
                # It comes back when its visibility timeout ends.
                logger.warning("could not hand back %s: %s", message_id, error)
        if waiters:
            logger.info("handed %d waiting messages back to the queue", len(waiters))

    def _heartbeat(self) -> None:
        interval = self.heartbeat_interval
        while True:
            self._heartbeat_progress = time.monotonic()
            if self._stopping.wait(interval):
                if not self.in_flight and not self.waiting:
                    return
                time.sleep(interval)  # draining: keep extending, without spinning
            now = time.monotonic()
            soon = now + 2 * interval
            with self._slots:
                self._start_waiting()  # a safety net; slots normally start them as they free
                busy = [r for r, f in self._in_flight.items() if f.visible_until < soon]
            waiting = self.line.visibility_due(soon)
            if busy or waiting:
                # Not through the acknowledgements: already one batched call for all that are
                # due, and `visible_until` may only move on once SQS has taken the extension.
                try:
                    self.queue.extend_visibility([*busy, *waiting], self.visibility_timeout)
                except AWSUnavailable as error:
                    logger.warning("could not extend visibility: %s", error)
                else:
                    until = now + self.visibility_timeout
                    with self._slots:
                        for receipt in busy:
                            if receipt in self._in_flight:
                                self._in_flight[receipt].visible_until = until
                    self.line.extended(waiting, until)
            self._refresh_waiting()  # after the extension, which matters more
