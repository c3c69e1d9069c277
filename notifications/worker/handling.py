"""Handling one queue message, synchronously: claim it, then deliver it, or decide what to do with
its queue message when it cannot be claimed (drop a duplicate, come back when a lease ends, wait
in line, defer, postpone). The decisions about the message itself are the services'; this module
keeps to the queue message (its receipt) and the worker's admission tickets.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from notifications import metrics, services
from notifications.aws import AWSUnavailable
from notifications.clock import Clock
from notifications.delivery.admission import Admission, Ticket
from notifications.delivery.backoff import RetrySchedule
from notifications.delivery.http import DeliveryClient
from notifications.delivery.policy import OutcomePolicy, Verdict
from notifications.domain import Message
from notifications.queue import QueuedWork, WorkQueue
from notifications.selectors import ProducerCache
from notifications.services import Candidate, ClaimResult, ClaimState
from notifications.signing import signature_headers
from notifications.store import MessageStore
from notifications.worker.acks import Acknowledgements
from notifications.worker.waiting import Refusal, WaitingLine

logger = logging.getLogger(__name__)

# When a claimed message's request item could not be read (an AWS fault), it is looked at again
# after this long, its attempt given back.
REQUEST_READ_RETRY_SECONDS = 5

# What `handle` returns, as the deliveries metric counts it (the rest: duplicates, messages not
# due yet or under another worker's lease, undecodable or unknown ones, are not deliveries).
METRIC_OUTCOMES = {
    "completed": "completed",
    "queued": "retry",
    "failed": "failed",
    "lease_lost": "lease_lost",
    "deferred": "deferred",
    "waiting": "deferred",
    "held": "held",
}

# Asked when admission refuses a message: take it into the waiting line (True), or not.
WaitInLine = Callable[[Refusal], bool]


class MessageHandling:
    """The handling half of `Worker` (see `worker.loop`), which provides these attributes."""

    acks: Acknowledgements
    admission: Admission
    client: DeliveryClient
    clock: Clock
    lease_seconds: float
    line: WaitingLine
    policy: OutcomePolicy
    queue: WorkQueue
    schedule: RetrySchedule
    producers: ProducerCache
    hold_seconds: int
    store: MessageStore
    worker_id: str

    def handle(
        self,
        work: QueuedWork,
        *,
        reserved: Ticket | None = None,
        wait_in_line: WaitInLine | None = None,
    ) -> str:
        """Process one queue message; returns what happened (for logs, metrics and tests).

        `reserved` is an admission ticket already taken for it (a message leaving the waiting
        line). `wait_in_line`, asked when admission refuses the message, takes it into the
        waiting line (True) instead of deferring it through SQS."""
        outcome = self._handle(work, reserved=reserved, wait_in_line=wait_in_line)
        if outcome in METRIC_OUTCOMES:
            metrics.record_delivery(METRIC_OUTCOMES[outcome])
        return outcome

    def _handle(
        self,
        work: QueuedWork,
        *,
        reserved: Ticket | None,
        wait_in_line: WaitInLine | None,
    ) -> str:
        if work.message_id is None:
            # Left in the queue on purpose: after SQS_MAX_RECEIVE_COUNT receives SQS moves it to
            # the dead-letter queue instead of it looping forever.
            logger.error("undecodable queue message (receive %d)", work.receive_count)
            return "undecodable"
        tickets: list[Ticket] = [reserved] if reserved is not None else []

        def admit(candidate: Candidate) -> bool:
            if not tickets:  # asked again after a lost race: keep the slot already taken
                ticket = self.admission.try_admit(
                    candidate.host,
                    is_retry=candidate.is_retry,
                    producer=candidate.producer,
                )
                if ticket is None:
                    return False
                tickets.append(ticket)
            return True

        try:
            result = services.delivery_claim(
                message_id=work.message_id,
                worker_id=self.worker_id,
                lease_seconds=self.lease_seconds,
                admit=admit,
                hint=Candidate(work.host, work.producer, work.is_retry) if work.host else None,
                store=self.store,
                clock=self.clock,
            )
        except BaseException:
            for ticket in tickets:  # an AWS fault after admission must not leak the slot
                self.admission.release(ticket)
            raise
        if result.state != ClaimState.CLAIMED:
            for ticket in tickets:
                self.admission.release(ticket)
            return self.not_claimed(work, result, wait_in_line)
        assert result.message is not None
        started = time.monotonic()
        try:
            return self._deliver(work, result.message, tickets[0])
        finally:
            self.admission.release(tickets[0], seconds=time.monotonic() - started)

    def not_claimed(
        self, work: QueuedWork, result: ClaimResult, wait_in_line: WaitInLine | None
    ) -> str:
        """What becomes of a queue message whose message could not be claimed."""
        assert work.message_id is not None
        if result.state == ClaimState.MISSING:
            logger.error("queue message for unknown message %s", work.message_id)
            return "missing"
        if result.state == ClaimState.FINISHED:
            self.acks.delete(work.receipt_handle)  # a duplicate: the work is done
            return "duplicate"
        if result.state == ClaimState.BUSY:
            # Another worker holds a live lease. Come back when it ends: by then the message is
            # finished (and this copy is dropped) or the lease expired (and this copy re-claims).
            self.acks.change_visibility(work.receipt_handle, math.ceil(result.wait_seconds) + 1)
            return "busy"
        if result.state == ClaimState.NOT_DUE:
            assert result.message is not None
            services.delivery_postpone(
                message=result.message, wait_seconds=result.wait_seconds, queue=self.queue
            )
            self.acks.delete(work.receipt_handle)
            return "not_due"
        # DEFERRED: its host is at its limit, or retries have their share. Wait in line here,
        # or, when the line is full, look again later through a new queue message.
        message = result.message
        if message is not None:
            refusal = Refusal(Candidate.of(message), message)
        else:  # refused on the queue message's hints, before anything was read
            assert work.host is not None
            refusal = Refusal(Candidate(work.host, work.producer, work.is_retry), None)
        if wait_in_line is not None and wait_in_line(refusal):
            return "waiting"
        if message is None:  # refused on the hint: see what it is before deferring it
            message, blocked = services.delivery_blocker(
                message_id=work.message_id, store=self.store, clock=self.clock
            )
            if blocked is not None:
                return self.not_claimed(work, blocked, None)
            assert message is not None
        host = message.request.host
        delay = math.ceil(self.admission.defer_seconds(host, ahead=self.line.ahead_for(host)))
        services.delivery_defer(
            message=message,
            delay_seconds=delay,
            store=self.store,
            queue=self.queue,
            clock=self.clock,
        )
        self.acks.delete(work.receipt_handle)
        return "deferred"

    def _deliver(self, work: QueuedWork, message: Message, ticket: Ticket) -> str:
        if message.budget_attempts > self.schedule.max_attempts:
            services.delivery_give_up(
                claimed=message,
                worker_id=self.worker_id,
                reason=f"retry budget spent ({self.schedule.max_attempts} attempts)",
                store=self.store,
                clock=self.clock,
            )
            self.acks.delete(work.receipt_handle)
            return "failed"
        producer = self.producers.get(message.producer_id)
        if not producer.active:
            held = services.delivery_hold(
                claimed=message,
                worker_id=self.worker_id,
                reason=f"held: producer {message.producer_id} is deactivated",
                hold_seconds=self.hold_seconds,
                store=self.store,
                queue=self.queue,
                clock=self.clock,
            )
            self.acks.delete(work.receipt_handle)
            return "held" if held is not None else "lease_lost"
        try:
            message = self.store.with_request(message)  # one read when the request is kept apart
        except AWSUnavailable as error:
            # No call was made: the claim's attempt is given back and the message looked at
            # again shortly (an AWS fault; a request item that is gone fails at its budget).
            logger.warning("message %s: request not read, given back: %s", message.id, error)
            released = services.delivery_give_back(
                claimed=message,
                worker_id=self.worker_id,
                reason="waits: its request could not be read",
                wait_seconds=REQUEST_READ_RETRY_SECONDS,
                store=self.store,
                queue=self.queue,
                clock=self.clock,
            )
            self.acks.delete(work.receipt_handle)
            return "deferred" if released is not None else "lease_lost"
        if not self.admission.confirm(ticket):  # a failing host's circuit opened meanwhile
            host = message.request.host
            released = services.delivery_give_back(
                claimed=message,
                worker_id=self.worker_id,
                reason=f"waits: {host} takes no calls now (circuit open or paused)",
                wait_seconds=math.ceil(self.admission.defer_seconds(host)),
                store=self.store,
                queue=self.queue,
                clock=self.clock,
            )
            self.acks.delete(work.receipt_handle)
            return "deferred" if released is not None else "lease_lost"
        started = self.clock.now()
        signatures = signature_headers(
            producer.signing_secrets, message.id, int(started.timestamp()), message.request.body
        )
        result = self.client.send(message.request, message.id, signatures)
        outcome = services.delivery_record(
            claimed=message,
            result=result,
            started_at=started,
            worker_id=self.worker_id,
            policy=self.policy,
            schedule=self.schedule,
            store=self.store,
            queue=self.queue,
            clock=self.clock,
        )
        if not result.blocked:  # a call was made: the host's circuit counts it
            failed = outcome.verdict == Verdict.RETRY
            self.admission.record_call(
                ticket, failed=failed, detail=services.describe_result(result)
            )
        # Only now that the outcome is stored may the queue message go.
        self.acks.delete(work.receipt_handle)
        if outcome.message is None:
            return "lease_lost"
        return outcome.message.status.value.lower()
