"""Stale workers, reconciliation and bulk requeue."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command

from notifications.clock import ManualClock
from notifications.delivery.http import HttpResult
from notifications.delivery.policy import Verdict
from notifications.domain import Status, format_timestamp
from notifications.queue import default_queue
from notifications.services import Candidate, ClaimState, delivery_claim, delivery_record
from notifications.store import MessageStore, default_store
from tests.factories import build_message
from tests.support.worker import run_until, status_of
from tests.vendor import Answer

pytestmark = pytest.mark.usefixtures("aws")


def test_stale_worker_result_is_refused_and_the_new_one_stands(make_worker):
    clock = ManualClock()
    store = default_store()
    message = build_message(status=Status.QUEUED, created_at=format_timestamp(clock.now()))
    store.put_new(message)
    worker = make_worker(clock=clock)

    stale = delivery_claim(message_id=message.id, worker_id="old", lease_seconds=10, clock=clock)
    assert stale.state == ClaimState.CLAIMED
    clock.advance(11)  # the old worker hung past its lease
    fresh = delivery_claim(message_id=message.id, worker_id="new", lease_seconds=10, clock=clock)
    assert fresh.state == ClaimState.CLAIMED
    assert fresh.message.lease_token != stale.message.lease_token

    common = {"policy": worker.policy, "schedule": worker.schedule, "clock": clock}
    late = delivery_record(
        claimed=stale.message,
        result=HttpResult(500, 5, snippet="late"),
        started_at=clock.now(),
        worker_id="old",
        **common,
    )
    assert late.message is None  # refused
    done = delivery_record(
        claimed=fresh.message,
        result=HttpResult(200, 5),
        started_at=clock.now(),
        worker_id="new",
        **common,
    )
    assert done.verdict is Verdict.DELIVERED
    final = store.get(message.id)
    assert final.status == Status.COMPLETED
    assert final.history[-1].actor == "worker:new"
    assert "expired" in final.history[-2].reason
    assert final.attempt_count == 2


def test_live_lease_is_not_reclaimed():
    clock = ManualClock()
    message = build_message(status=Status.QUEUED, created_at=format_timestamp(clock.now()))
    default_store().put_new(message)
    delivery_claim(message_id=message.id, worker_id="a", lease_seconds=10, clock=clock)
    clock.advance(9)
    second = delivery_claim(message_id=message.id, worker_id="b", lease_seconds=10, clock=clock)
    assert second.state == ClaimState.BUSY
    assert second.wait_seconds == pytest.approx(1)


def reconcile(*args: str) -> str:
    out = StringIO()
    call_command("reconcile", *args, stdout=out)
    return out.getvalue()


def test_reconcile_delivers_a_pending_message_that_never_reached_sqs(make_worker, vendor):
    old = format_timestamp(ago(600))
    message = build_message(status=Status.PENDING, created_at=old, url=vendor.url("/pending"))
    default_store().put_new(message)
    assert default_queue().depth()["visible"] == 0

    output = reconcile("--older-than", "120")

    assert "PENDING, never queued" in output
    assert status_of(message.id) == Status.QUEUED
    run_until(make_worker(), lambda: status_of(message.id) == Status.COMPLETED)
    assert len(vendor.requests_to("/pending")) == 1


def test_reconcile_recovers_an_expired_lease(make_worker, vendor):
    expired = format_timestamp(ago(30))
    message = build_message(
        status=Status.PROCESSING,
        url=vendor.url("/lease"),
        lease_token="dead-worker",
        lease_expires_at=expired,
    )
    default_store().put_new(message)

    reconcile()

    recovered = default_store().get(message.id)
    assert recovered.status == Status.QUEUED and recovered.lease_token is None
    assert recovered.history[-1].actor == "reconciler"
    run_until(make_worker(), lambda: status_of(message.id) == Status.COMPLETED)


def test_reconcile_resends_a_queued_message_whose_queue_message_was_lost(make_worker, vendor):
    message = build_message(
        status=Status.QUEUED,
        url=vendor.url("/lost"),
        next_attempt_at=format_timestamp(ago(3600)),
    )
    default_store().put_new(message)
    reconcile()
    assert default_queue().depth()["visible"] == 1
    reconcile()  # a second pass (or a second reconciler) does not add another copy
    assert default_queue().depth()["visible"] == 1
    run_until(make_worker(), lambda: status_of(message.id) == Status.COMPLETED)


def test_reconcile_dry_run_changes_nothing():
    store = default_store()
    pending = build_message(status=Status.PENDING, created_at=format_timestamp(ago(600)))
    processing = build_message(
        status=Status.PROCESSING,
        lease_token="x",
        lease_expires_at=format_timestamp(ago(60)),
    )
    for message in (pending, processing):
        store.put_new(message)

    output = reconcile("--dry-run")

    assert "dry run" in output
    assert store.get(pending.id) == pending
    assert store.get(processing.id) == processing
    assert default_queue().depth()["visible"] == 0


def test_recent_pending_is_left_to_the_api():
    message = build_message(status=Status.PENDING)
    default_store().put_new(message)
    reconcile("--older-than", "120")
    assert status_of(message.id) == Status.PENDING


def ago(seconds: float):
    from notifications.clock import system_clock

    return system_clock.now() - timedelta(seconds=seconds)


def test_requeue_failed_command_filters_by_window_and_host(make_worker, vendor):
    store = default_store()
    url_a, url_b = vendor.url("/a"), "https://other.example.com/x"
    failed_a = build_message(status=Status.FAILED, url=url_a)
    failed_b = build_message(status=Status.FAILED, url=url_b)
    done = build_message(status=Status.COMPLETED, url=url_a)
    for message in (failed_a, failed_b, done):
        store.put_new(message)

    out = StringIO()
    call_command("requeue_failed", "--target-host", "127.0.0.1", "--dry-run", stdout=out)
    assert failed_a.id in out.getvalue() and failed_b.id not in out.getvalue()
    assert status_of(failed_a.id) == Status.FAILED

    since = format_timestamp(ago(3600))
    out = StringIO()
    call_command(
        "requeue_failed",
        "--since",
        since,
        "--target-host",
        "127.0.0.1",
        "--reason",
        "vendor back",
        stdout=out,
    )
    assert "1 requeued" in out.getvalue()
    requeued = store.get(failed_a.id)
    assert requeued.status == Status.QUEUED
    assert requeued.budget_attempts == 0
    assert requeued.history[-1].reason == "vendor back"
    assert requeued.history[-1].actor.startswith("operator:")
    assert status_of(failed_b.id) == Status.FAILED
    assert status_of(done.id) == Status.COMPLETED

    vendor.script("/a", Answer(200))
    run_until(make_worker(), lambda: status_of(failed_a.id) == Status.COMPLETED)

    out = StringIO()
    call_command("requeue_failed", "--until", since, stdout=out)
    assert "0 requeued" in out.getvalue()


# -- claiming with the queue message's hint: one conditional write, read only on a conflict ---


def claim_with_hint(message, clock, **kwargs):
    kwargs.setdefault("store", default_store())
    return delivery_claim(
        message_id=message.id,
        worker_id="w",
        lease_seconds=10,
        hint=Candidate.of(message),
        clock=clock,
        **kwargs,
    )


def test_a_hinted_claim_of_a_due_message_is_one_write_and_no_read(faults):
    clock = ManualClock()
    # Its own store, whose status counts are written only when asked: counting the claim's
    # calls must not see a background count write.
    store = MessageStore(default_store().table_name, stats_flush_seconds=3600)
    message = build_message(status=Status.QUEUED, created_at=format_timestamp(clock.now()))
    store.put_new(message)
    default_store().flush_statistics()
    reads = faults.count("dynamodb", "GetItem")
    writes = faults.count("dynamodb", "UpdateItem")
    asked = []

    claim = claim_with_hint(
        message, clock, admit=lambda candidate: asked.append(candidate.host) or True, store=store
    )

    assert claim.state == ClaimState.CLAIMED
    assert (reads(), writes()) == (0, 1)
    store.flush_statistics()
    assert asked == ["vendor.example.com"]
    claimed = default_store().get(message.id)
    assert claimed.status == Status.PROCESSING
    assert (claimed.attempt_count, claimed.budget_attempts) == (1, 1)
    assert claimed.lease_token == claim.message.lease_token
    assert claimed.history[-1].from_status == Status.QUEUED


def test_a_hinted_claim_decides_on_the_item_when_the_write_is_refused(faults):
    clock = ManualClock()
    store = default_store()
    later = format_timestamp(clock.now() + timedelta(seconds=30))
    not_due = build_message(status=Status.QUEUED, next_attempt_at=later)
    pending = build_message(status=Status.PENDING)  # sent to SQS, not yet marked QUEUED
    done = build_message(status=Status.COMPLETED)
    for message in (not_due, pending, done):
        store.put_new(message)
    reads = faults.count("dynamodb", "GetItem")

    assert claim_with_hint(not_due, clock).state == ClaimState.NOT_DUE
    assert store.get(not_due.id).status == Status.QUEUED  # nothing written
    assert claim_with_hint(done, clock).state == ClaimState.FINISHED
    picked_up = claim_with_hint(pending, clock)
    assert picked_up.state == ClaimState.CLAIMED
    assert picked_up.message.history[-1].from_status == Status.PENDING
    assert picked_up.message.attempt_count == 1
    missing = build_message(status=Status.QUEUED)  # never stored
    assert claim_with_hint(missing, clock).state == ClaimState.MISSING
    assert reads() == 1  # the test's own; the claims read nothing


def test_a_hinted_claim_of_a_message_not_yet_marked_queued_is_still_one_write(faults):
    """The queue message can arrive before the intake's PENDING -> QUEUED write: the claim
    accepts either status in one write, and the history and status counts still say the
    message left PENDING."""
    clock = ManualClock()
    store = MessageStore(default_store().table_name, stats_flush_seconds=3600)
    pending = build_message(status=Status.PENDING, created_at=format_timestamp(clock.now()))
    store.put_new(pending)
    store.flush_statistics()
    before = store.statistics(now=clock.now()).counts
    writes = faults.count("dynamodb", "UpdateItem")
    reads = faults.count("dynamodb", "GetItem")

    claim = claim_with_hint(pending, clock, store=store)

    assert claim.state == ClaimState.CLAIMED
    assert (reads(), writes()) == (0, 1)
    assert claim.message.history[-1].from_status == Status.PENDING
    full, _ = store.get_full(pending.id)
    assert [(e.from_status, e.to_status) for e in full.history] == [
        (None, Status.PENDING),
        (Status.PENDING, Status.PROCESSING),
    ]
    store.flush_statistics()
    after = store.statistics(now=clock.now()).counts
    assert after[Status.PENDING] == before[Status.PENDING] - 1
    assert after[Status.PROCESSING] == before[Status.PROCESSING] + 1
    assert after[Status.QUEUED] == before[Status.QUEUED]


def test_a_hinted_claim_refused_by_admission_defers_without_reading_or_writing(faults):
    clock = ManualClock()
    message = build_message(status=Status.QUEUED)
    default_store().put_new(message)
    default_store().flush_statistics()  # so no background count write lands in the window
    calls = [faults.count("dynamodb", op) for op in ("GetItem", "UpdateItem", "PutItem")]
    claim = claim_with_hint(message, clock, admit=lambda candidate: False)
    assert claim.state == ClaimState.DEFERRED
    assert claim.message is None
    assert [count() for count in calls] == [0, 0, 0]
    assert default_store().get(message.id).status == Status.QUEUED


def test_an_aws_outage_while_the_outcome_is_stored_costs_no_second_call(make_worker, vendor):
    """The soak's main avoidable duplicate: a worker whose outcome write met an outage left the
    message PROCESSING, and whoever re-claimed it after the lease called the vendor again."""
    from botocore.exceptions import EndpointConnectionError

    from notifications import aws

    message = build_message(status=Status.QUEUED, url=vendor.url("/outage"))
    default_store().put_new(message)
    default_queue().send_for(message)
    client = aws.client("dynamodb")
    event = f"before-send.{client.meta.service_model.service_id.hyphenize()}.UpdateItem"
    refused: list[int] = []

    def outage(request, **_):  # the write that stores the outcome, for its first two tries
        body = request.body or b""
        if message.id.encode() in body and b'"COMPLETED"' in body and len(refused) < 6:
            refused.append(1)
            raise EndpointConnectionError(endpoint_url=request.url)

    client.meta.events.register(event, outage)
    try:
        outcomes = run_until(make_worker(), lambda: status_of(message.id) == Status.COMPLETED)
    finally:
        client.meta.events.unregister(event, outage)

    assert refused and outcomes == ["completed"]
    assert len(vendor.requests_to("/outage")) == 1
