"""The delivery state machine, driven by hypothesis: interleaved submits, claims by two workers,
recorded outcomes, crashes, lease expiry on an injected clock, requeues, reconcile passes, SQS
failing and queue messages lost, against moto, with the invariants checked after every step:

- a terminal status is left only by an operator's requeue of a FAILED message;
- PROCESSING always has a lease (and nothing else has one), no claim is taken under another's
  live lease, and a worker whose lease was taken over cannot store its outcome;
- vendor calls never exceed the retry budget, and every stored attempt is one a worker recorded;
- the history is ordered, every entry an allowed transition (`domain.TRANSITIONS`) from where the
  previous one left, ending at the current status;
- every message not COMPLETED or FAILED has a queue message waiting for it, or is found by a
  reconcile pass (a dry run, a year later).

Herald's own code runs unchanged (services, store, queue, on the session's moto server); only the
queue's *receiving* side is modelled here: every queue message Herald sends is seen (a botocore
event on Herald's SQS client) and kept in `copies`, and a "worker" takes one from there and does
with it what `worker.handling` does with a received one. A modelled queue, because moto delays
queue messages in real time while this test's clock is a `ManualClock` that jumps.

Each example gets a table and queues of its own, so reconcile passes see only its messages.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import random
from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from hypothesis import HealthCheck, event
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from notifications import aws as herald_aws
from notifications.clock import ManualClock
from notifications.delivery.backoff import RetrySchedule
from notifications.delivery.http import HttpResult
from notifications.delivery.policy import OutcomePolicy, parse_status_set
from notifications.domain import (
    TERMINAL_STATUSES,
    TRANSITIONS,
    FailureReason,
    InvalidState,
    Message,
    Status,
)
from notifications.queue import WorkQueue
from notifications.services import (
    Candidate,
    ClaimState,
    Submission,
    delivery_claim,
    delivery_give_up,
    delivery_postpone,
    delivery_record,
    message_requeue,
    message_submit,
    messages_reconcile,
)
from notifications.store import MessageStore

LEASE_SECONDS = 20.0
MAX_ATTEMPTS = 4
SCHEDULE = RetrySchedule(
    delays=(1.0, 2.0, 4.0), max_attempts=MAX_ATTEMPTS, max_age_seconds=3600, jitter=0.0
)
POLICY = OutcomePolicy(parse_status_set("408,425,429,500-599"))
OLDER_THAN = 30.0
WORKERS = ("w1", "w2")
PRODUCER = "prd_machine"
REQUEUE_ACTOR = "operator:machine"
OUTCOMES = {
    "delivered": HttpResult(200, 5),
    "retryable": HttpResult(503, 5),
    "rate_limited": HttpResult(429, 5, headers={"retry-after": "3"}),
    "permanent": HttpResult(410, 5),
    "timeout": HttpResult(
        None, 10_000, error="DeliveryTimeout: deadline", reason=FailureReason.TIMEOUT
    ),
}
START = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
SOMETIMES = st.sampled_from([False, False, False, True])  # an SQS fault in one case of four
examples = itertools.count()


def _event(value: str) -> None:
    """hypothesis's `event` (statistics: `--hypothesis-show-statistics`); nothing when a
    scenario below drives the machine by hand."""
    with contextlib.suppress(InvalidArgument):
        event(value)


class QueueWatch:
    """Sees every queue message Herald sends (SendMessage, SendMessageBatch) on its own SQS
    client and tells the running machine; can make those sends fail (a refused request, which
    botocore does not retry, so the test does not sleep)."""

    machine: DeliveryMachine | None = None

    def __init__(self) -> None:
        self.client = herald_aws.client("sqs")
        self.registrations: list[tuple[str, Any]] = []
        for operation in ("SendMessage", "SendMessageBatch"):
            self._register(f"before-parameter-build.sqs.{operation}", self._remember)
            self._register(f"before-send.sqs.{operation}", self._maybe_fail)
            self._register(f"after-call.sqs.{operation}", self._sent)

    def _register(self, name: str, handler: Any) -> None:
        self.client.meta.events.register(name, handler)
        self.registrations.append((name, handler))

    def close(self) -> None:
        for name, handler in self.registrations:
            self.client.meta.events.unregister(name, handler)

    def _remember(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["sent_params"] = params

    def _maybe_fail(self, request: Any, **_: Any) -> AWSResponse | None:
        if self.machine is None or not self.machine.sqs_down:
            return None
        body = json.dumps({"__type": "com.amazonaws.sqs#AccessDenied", "message": "down"})
        return AWSResponse(
            request.url, 403, {"Content-Type": "application/x-amz-json-1.0"}, _Raw(body.encode())
        )

    def _sent(self, http_response: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any):
        params = context.get("sent_params") or {}
        if self.machine is None or http_response.status_code != 200:
            return
        if params.get("QueueUrl") != self.machine.queue.url:
            return
        if "Entries" in params:
            succeeded = {entry["Id"] for entry in parsed.get("Successful", [])}
            bodies = [e["MessageBody"] for e in params["Entries"] if e["Id"] in succeeded]
        else:
            bodies = [params["MessageBody"]]
        for body in bodies:
            self.machine.on_sent(json.loads(body))


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Any:
        yield self.body


class DeliveryMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        name = f"machine-{next(examples)}"
        self.store = MessageStore(name, stats_flush_seconds=60)
        self.store.ensure_table()
        self.queue = WorkQueue(name, f"{name}-dlq")
        self.queue.ensure_queues()
        self.clock = ManualClock(START)
        self.ids: list[str] = []
        self.seen: dict[str, Message] = {}  # each message as the last step left it
        self.found_by_reconcile: set[tuple[str | None, ...]] = set()  # states a dry run found
        # Queue messages sent and not deleted, per message: None while one waits in the queue,
        # the worker's name while a worker has received it (invisible to the others).
        self.copies: dict[str, list[str | None]] = defaultdict(list)
        self.hints: dict[str, dict[str, Any]] = {}  # the latest queue message body per message
        self.holding: dict[str, dict[str, Message]] = {worker: {} for worker in WORKERS}
        self.calls: Counter[str] = Counter()  # vendor calls in the current retry budget
        self.recorded: Counter[str] = Counter()  # attempts stored
        self.sqs_down = False
        QueueWatch.machine = self

    def teardown(self) -> None:
        QueueWatch.machine = None
        self.store.flush_statistics()
        for message_id in self.ids:  # the attempt log, read whole once (LOG items included)
            message, attempts = self.store.get_full(message_id)
            assert message is not None
            assert len(attempts) == self.recorded[message_id], "an attempt lost or stored twice"
            numbers = [attempt.number for attempt in attempts]
            assert numbers == sorted(set(numbers)), "attempt numbers repeat or go back"
            check_history(message)

    def on_sent(self, body: dict[str, Any]) -> None:
        message_id = body["message_id"]
        self.copies[message_id].append(None)
        self.hints[message_id] = body

    def _waiting(self, worker: str | None = None) -> list[str]:
        """Messages with a queue message waiting (that `worker` could receive: not one whose
        message it holds a claim on), in submission order: never by id, since ids are random
        and the draws must not depend on them."""
        held = self.holding[worker] if worker else {}
        return [m for m in self.ids if None in self.copies[m] and m not in held]

    def _hand(self, message_id: str, *, from_: str | None, to: str | None) -> None:
        """One queue message of `message_id` changes hands (None: the queue)."""
        copies = self.copies[message_id]
        copies[copies.index(from_)] = to

    def _delete(self, worker: str, message_id: str) -> None:
        """`worker` deletes the queue message it received; none if it lost it meanwhile (a
        stale receipt deletes nothing)."""
        if worker in self.copies[message_id]:
            self.copies[message_id].remove(worker)

    # -- rules ------------------------------------------------------------------------------

    @initialize(count=st.integers(1, 3), large=st.booleans())
    def accepted(self, count: int, large: bool) -> None:
        """Every example starts with a few messages accepted."""
        for _ in range(count):
            self._submit(large=large, sqs_fails=False)

    @rule(large=st.booleans(), sqs_fails=SOMETIMES)
    def submit(self, large: bool, sqs_fails: bool) -> None:
        """A producer submits (SQS failing: the message stays PENDING, the outbox); at most six
        messages an example."""
        if len(self.ids) < 6:
            self._submit(large=large, sqs_fails=sqs_fails)

    def _submit(self, *, large: bool, sqs_fails: bool) -> None:
        body = json.dumps({"n": len(self.ids), "padding": "x" * (800 if large else 10)})
        submission = Submission(
            target_url="https://vendor.example.com/hook",
            method="POST",
            headers={},
            body=body,
            body_is_json=True,
        )
        self.sqs_down = sqs_fails
        try:
            result = message_submit(
                producer_id=PRODUCER,
                submission=submission,
                store=self.store,
                queue=self.queue,
                clock=self.clock,
            )
        finally:
            self.sqs_down = False
        self.ids.append(result.message.id)
        self.seen[result.message.id] = result.message
        assert result.message.status == (Status.PENDING if sqs_fails else Status.QUEUED)

    # Three rules, each drawing its choices itself: hypothesis's swarm testing switches rules off
    # for a whole example, and a few broad rules leave fewer examples where nothing happens.
    # (With one argument and the first name, the workers' rule is also the one it favours.)
    @rule(data=st.data())
    def deliveries(self, data: st.DataObject) -> None:
        """One of the two workers: receives a queue message and claims its message (`take`),
        stores the outcome of a call made under a claim it holds (`record`; SQS failing: a retry
        is not sent), both in one go (`deliver`), dies with kill -9 (`crash`: its claims stay
        in the store, its queue messages come back later), or receives again a queue message the
        other worker still holds a claim for, after that claim's lease ran out (`take over`)."""
        action = data.draw(
            st.sampled_from(["take", "take", "deliver", "record", "record", "take over", "crash"])
        )
        outcome = data.draw(st.sampled_from(sorted(OUTCOMES)))
        sqs_fails = data.draw(SOMETIMES)
        _event(f"worker: {action}")
        # Claims held, as (worker, message) in a fixed order: in submission order, never by id
        # (ids are random, and the draws must not depend on them).
        claims = [(w, m) for w in WORKERS for m in self.ids if m in self.holding[w]]
        if action in ("take", "deliver"):
            worker = data.draw(st.sampled_from(WORKERS))
            receivable = self._waiting(worker)
            if receivable:
                message_id = data.draw(st.sampled_from(receivable))
                if self._take(worker, message_id) and action == "deliver":
                    self._record(worker, message_id, outcome, sqs_fails)
        elif action == "record" and claims:
            self._record(*data.draw(st.sampled_from(claims)), outcome, sqs_fails)
        elif action == "take over":
            # The holder's heartbeat failed and its lease ran out while it still calls: the
            # other worker receives the queue message again.
            theirs = [(w, m) for w, m in claims if w in self.copies[m]]
            if theirs:
                holder, message_id = data.draw(st.sampled_from(theirs))
                self._hand(message_id, from_=holder, to=None)
                self.clock.advance(LEASE_SECONDS + 1)
                self._take(next(w for w in WORKERS if w != holder), message_id)
        elif action == "crash" and claims:
            worker = data.draw(st.sampled_from(sorted({w for w, _ in claims})))
            for copies in self.copies.values():
                copies[:] = [None if copy == worker else copy for copy in copies]
            self.holding[worker].clear()

    def _take(self, worker: str, message_id: str) -> bool:
        """What the worker does with a received queue message (`worker.handling`); True when it
        now holds a claim to call under."""
        hint = self.hints[message_id]
        self._hand(message_id, from_=None, to=worker)
        before = self.seen[message_id]
        result = delivery_claim(
            message_id=message_id,
            worker_id=worker,
            lease_seconds=LEASE_SECONDS,
            hint=Candidate(hint["host"], hint["producer"], hint.get("retry", False)),
            store=self.store,
            clock=self.clock,
        )
        _event(f"claim: {result.state}")
        if result.state == ClaimState.CLAIMED:
            live = before.status == Status.PROCESSING and self._lease_live(before)
            assert not live, "claimed a message under another worker's live lease"
            if before.status == Status.PROCESSING:
                _event("claim: an expired lease re-claimed")
            claimed = result.message
            assert claimed is not None and claimed.status == Status.PROCESSING
            self.seen[message_id] = claimed
            if claimed.budget_attempts <= MAX_ATTEMPTS:
                self.holding[worker][message_id] = claimed
                return True
            given_up = delivery_give_up(  # without a call: the budget is spent
                claimed=claimed,
                worker_id=worker,
                reason="spent",
                store=self.store,
                clock=self.clock,
            )
            assert given_up is not None and given_up.status == Status.FAILED
            self._delete(worker, message_id)
        elif result.state == ClaimState.FINISHED:
            self._delete(worker, message_id)
        elif result.state == ClaimState.NOT_DUE:
            assert result.message is not None
            delivery_postpone(
                message=result.message, wait_seconds=result.wait_seconds, queue=self.queue
            )
            self._delete(worker, message_id)
        elif result.state == ClaimState.BUSY:
            self._hand(message_id, from_=worker, to=None)  # visible again when the lease ends
        else:
            raise AssertionError(f"unexpected claim result {result.state}")
        return False

    def _record(self, worker: str, message_id: str, outcome: str, sqs_fails: bool) -> None:
        claimed = self.holding[worker].pop(message_id)
        self.calls[message_id] += 1  # the call was made, whatever becomes of its result
        before = self.seen[message_id]
        still_mine = (
            before.status == Status.PROCESSING and before.lease_token == claimed.lease_token
        )
        self.sqs_down = sqs_fails
        try:
            stored = delivery_record(
                claimed=claimed,
                result=OUTCOMES[outcome],
                started_at=self.clock.now(),
                worker_id=worker,
                policy=POLICY,
                schedule=SCHEDULE,
                store=self.store,
                queue=self.queue,
                clock=self.clock,
                rng=random.Random(0),
            )
        finally:
            self.sqs_down = False
        assert (stored.message is not None) == still_mine
        _event(f"record: {stored.message.status if stored.message else 'lease lost'}")
        if stored.message is not None:
            self.recorded[message_id] += 1
        self._delete(worker, message_id)

    @rule(data=st.data())
    def happenings(self, data: st.DataObject) -> None:
        """Everything but the workers: time passes (retries fall due; at the longest, every lease
        expires), a reconcile pass (at 0 s: one that takes everything waiting for lost), an
        operator requeues a message, SQS loses what waits for a message (or moves it to the
        dead-letter queue), a received queue message becomes visible again while its worker
        still calls (its heartbeat failed)."""
        happening = data.draw(
            st.sampled_from(
                [
                    "2 s",
                    "8 s",
                    "lease",
                    "lease",
                    "reconcile",
                    "reconcile 0",
                    "requeue",
                    "queue lost",
                ]
            )
        )
        _event(f"happening: {happening}")
        if happening in ("2 s", "8 s", "lease"):
            self.clock.advance({"2 s": 2.0, "8 s": 8.0}.get(happening, LEASE_SECONDS + 1))
        elif happening.startswith("reconcile"):
            counts = messages_reconcile(
                older_than=0.0 if happening.endswith("0") else OLDER_THAN,
                store=self.store,
                queue=self.queue,
                clock=self.clock,
            )
            for kind in ("pending_queued", "expired_leases_requeued", "overdue_queued_resent"):
                if counts[kind]:
                    _event(f"reconcile: {kind}")
        elif happening == "requeue":
            self._requeue(data.draw(st.sampled_from(self.ids)))
        elif happening == "visible again":
            held = [m for m in self.ids if any(self.copies[m])]
            if held:  # the worker keeps its claim and calls; its delete will delete nothing
                message_id = data.draw(st.sampled_from(held))
                holder = next(copy for copy in self.copies[message_id] if copy)
                self._hand(message_id, from_=holder, to=None)
        else:
            waiting = self._waiting()
            if waiting:
                message_id = data.draw(st.sampled_from(waiting))
                self.copies[message_id] = [c for c in self.copies[message_id] if c is not None]

    def _requeue(self, message_id: str) -> None:
        try:
            message_requeue(
                message_id=message_id,
                actor=REQUEUE_ACTOR,
                store=self.store,
                queue=self.queue,
                clock=self.clock,
            )
        except InvalidState as refused:
            assert refused.message.status != Status.FAILED
        else:
            _event("requeued")
            self.calls[message_id] = 0  # a fresh retry budget

    # -- invariants -------------------------------------------------------------------------

    def _lease_live(self, message: Message) -> bool:
        return bool(message.lease_expires_at) and message.lease_expires_at > _stamp(self.clock)

    @invariant()
    def every_message_is_consistent(self) -> None:
        unreachable = []
        self.seen = {message.id: message for message in self.store.get_many(self.ids)}
        for message_id in self.ids:
            message = self.seen.get(message_id)
            assert message is not None, f"{message_id} is gone"
            check_history(message)
            check_lease(
                message, [held[message_id] for held in self.holding.values() if message_id in held]
            )
            assert self.calls[message_id] <= MAX_ATTEMPTS, "more calls than the retry budget"
            if message.status in TERMINAL_STATUSES or self.copies[message_id]:
                continue
            if _state(message) not in self.found_by_reconcile:  # a state not verified yet
                unreachable.append(message_id)
        if unreachable:  # no queue message waits for these: reconcile must find them
            found: dict[str, Message] = {}
            messages_reconcile(
                older_than=OLDER_THAN,
                dry_run=True,
                store=self.store,
                queue=self.queue,
                clock=ManualClock(self.clock.now().replace(year=self.clock.now().year + 1)),
                progress=lambda kind, message: found.__setitem__(message.id, message),
            )
            _event("reachable by reconcile only")
            missing = set(unreachable) - set(found)
            assert not missing, f"neither queued nor found by reconcile: {sorted(missing)}"
            self.found_by_reconcile.update(_state(self.seen[m]) for m in unreachable)


def _state(message: Message) -> tuple[str | None, ...]:
    """What reconcile decides on: a message found in this state is found in it again."""
    return (
        message.id,
        message.status,
        message.updated_at,
        message.next_attempt_at,
        message.lease_expires_at,
    )


def _stamp(clock: ManualClock) -> str:
    return clock.now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def check_history(message: Message) -> None:
    """Ordered, every entry an allowed transition from where the previous one left, ending at
    the current status; a terminal status is left only by an operator's requeue of a FAILED
    message. (Read from the status item alone, the history may start later: older entries move
    to LOG items.)"""
    history = message.history
    assert history
    if history[0].from_status is None:
        assert history[0].to_status == Status.PENDING
    for previous, entry in itertools.pairwise(history):
        assert entry.at >= previous.at, "history out of order"
        assert entry.from_status == previous.to_status, f"{entry} does not follow {previous}"
        assert (entry.from_status, entry.to_status) in TRANSITIONS, f"{entry} not allowed"
        if entry.from_status in TERMINAL_STATUSES:
            assert entry.from_status == Status.FAILED and entry.to_status == Status.QUEUED
            assert entry.actor == REQUEUE_ACTOR, f"{entry} left a terminal status"
    assert history[-1].to_status == message.status


def check_lease(message: Message, held: list[Message]) -> None:
    """PROCESSING under exactly one lease (token and expiry), and no lease otherwise; at most one
    worker holds the current one."""
    if message.status == Status.PROCESSING:
        assert message.lease_token and message.lease_expires_at
    else:
        assert message.lease_token is None and message.lease_expires_at is None
    holders = [claim for claim in held if claim.lease_token == message.lease_token]
    assert len(holders) <= 1 and (not holders or message.status == Status.PROCESSING)


@pytest.fixture
def machine_environment(aws: str, settings: Any) -> Any:
    settings.DYNAMODB_INDEX_SHARDS = 1  # a reconcile pass queries every shard: one is faster
    watch = QueueWatch()
    yield
    watch.close()


@pytest.mark.usefixtures("machine_environment")
@pytest.mark.timeout(900)  # a failure's shrinking takes minutes; a pass about 25 s
class TestDeliveryStateMachine(DeliveryMachine.TestCase):
    """30 examples of up to 20 steps, the same ones on every run (derandomized)."""

    settings = hypothesis_settings(
        max_examples=30,
        stateful_step_count=20,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


# -- the interleavings that matter most, step by step (the random runs reach them only sometimes)


class Scenario:
    """Drives a DeliveryMachine by hand, checking the invariants after every step."""

    def __init__(self) -> None:
        self.machine = DeliveryMachine()

    def __enter__(self) -> Scenario:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.machine.teardown()

    def step(self, action: Any, *args: Any, **kwargs: Any) -> Any:
        result = action(*args, **kwargs)
        self.machine.every_message_is_consistent()
        return result

    def status(self, message_id: str) -> Status:
        return self.machine.seen[message_id].status


@pytest.mark.usefixtures("machine_environment")
def test_a_worker_whose_lease_ran_out_cannot_overwrite_the_one_that_took_over():
    with Scenario() as run:
        machine = run.machine
        run.step(machine.accepted, count=1, large=False)
        message_id = machine.ids[0]
        assert run.step(machine._take, "w1", message_id)
        # w1's heartbeat fails and its lease runs out while it still calls.
        machine._hand(message_id, from_="w1", to=None)
        run.step(machine.clock.advance, LEASE_SECONDS + 1)
        assert run.step(machine._take, "w2", message_id)
        run.step(machine._record, "w1", message_id, "delivered", False)  # refused
        assert run.status(message_id) == Status.PROCESSING
        run.step(machine._record, "w2", message_id, "retryable", False)
        assert run.status(message_id) == Status.QUEUED


@pytest.mark.usefixtures("machine_environment")
def test_what_a_crash_and_lost_queue_messages_leave_is_finished_by_reconcile():
    with Scenario() as run:
        machine = run.machine
        run.step(machine._submit, large=True, sqs_fails=True)  # stays PENDING, no queue message
        run.step(machine.accepted, count=1, large=False)
        waiting, claimed = machine.ids
        assert run.step(machine._take, "w1", claimed)
        machine.holding["w1"].clear()  # kill -9 mid-call
        machine.copies[claimed].clear()  # and its queue message is lost too
        run.step(machine.clock.advance, LEASE_SECONDS + OLDER_THAN)
        run.step(
            messages_reconcile,
            older_than=OLDER_THAN,
            store=machine.store,
            queue=machine.queue,
            clock=machine.clock,
        )
        assert run.status(waiting) == Status.QUEUED and run.status(claimed) == Status.QUEUED
        for message_id in (waiting, claimed):
            assert run.step(machine._take, "w2", message_id)
            run.step(machine._record, "w2", message_id, "delivered", False)
            assert run.status(message_id) == Status.COMPLETED


@pytest.mark.usefixtures("machine_environment")
def test_a_spent_budget_fails_without_a_call_and_a_requeue_gives_a_new_one():
    with Scenario() as run:
        machine = run.machine
        run.step(machine.accepted, count=1, large=False)
        message_id = machine.ids[0]
        for _ in range(MAX_ATTEMPTS - 1):
            assert run.step(machine._take, "w1", message_id)
            run.step(machine._record, "w1", message_id, "retryable", False)
            run.step(machine.clock.advance, 8.0)
        assert run.step(machine._take, "w1", message_id)
        machine.holding["w1"].clear()  # the last attempt's worker dies mid-call
        run.step(machine.clock.advance, LEASE_SECONDS + 1)
        machine._hand(message_id, from_="w1", to=None)
        assert not run.step(machine._take, "w2", message_id)  # claimed, and given up at once
        assert run.status(message_id) == Status.FAILED
        assert machine.calls[message_id] == MAX_ATTEMPTS - 1
        run.step(machine._requeue, message_id)
        assert run.step(machine._take, "w2", message_id)
        run.step(machine._record, "w2", message_id, "delivered", False)
        assert run.status(message_id) == Status.COMPLETED
