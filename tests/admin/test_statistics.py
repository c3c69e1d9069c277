"""The store's maintained statistics: counters per status, failures per host, recent failures."""

from datetime import UTC, datetime, timedelta

import pytest

from notifications import aws, services
from notifications.clock import ManualClock
from notifications.domain import HistoryEntry, InvalidState, Status, format_timestamp
from notifications.store import RECENT_FAILURE_SLOTS, MessageStore, default_store, index_shards
from tests.factories import build_message
from tests.support.waiting import wait_until

pytestmark = pytest.mark.usefixtures("aws")

NOW = datetime(2026, 11, 25, 14, 30, tzinfo=UTC)


def fail_at(moment, *, url="https://ads.example.com/hook", error="HTTP 503: down"):
    """A message that reached FAILED at `moment` through the guarded transitions."""
    store = default_store()
    stamp = format_timestamp(moment)
    message = build_message(status=Status.PROCESSING, url=url, created_at=stamp)
    store.put_new(message)
    entry = HistoryEntry(Status.PROCESSING, Status.FAILED, stamp, "worker:tests", "gave up")
    return store.transition(
        message.id,
        producer_id=message.producer_id,
        expected=Status.PROCESSING,
        target=Status.FAILED,
        entry=entry,
        changes={"last_error": error},
    )


def test_counts_follow_every_status_change(put_message):
    for status, how_many in [
        (Status.PENDING, 2),
        (Status.QUEUED, 3),
        (Status.PROCESSING, 1),
        (Status.COMPLETED, 4),
        (Status.FAILED, 2),
    ]:
        for _ in range(how_many):
            put_message(status)
    store = default_store()
    counts = store.statistics(now=NOW).counts
    assert counts == {status: store.count_status(status) for status in Status}
    assert counts == {
        Status.PENDING: 2,
        Status.QUEUED: 3,
        Status.PROCESSING: 1,
        Status.COMPLETED: 4,
        Status.FAILED: 2,
    }


def test_requeue_moves_the_count_and_a_refused_transition_changes_nothing(put_message):
    failed = put_message(Status.FAILED)
    services.message_requeue(message_id=failed.id, actor="operator:tests")
    with pytest.raises(InvalidState):
        services.message_requeue(message_id=failed.id, actor="operator:tests")
    counts = default_store().statistics(now=NOW).counts
    assert counts[Status.FAILED] == 0
    assert counts[Status.QUEUED] == 1


def test_failures_by_host_cover_the_last_24_hours_by_utc_hour():
    for hours_ago, host in [(0, "a.example.com"), (1, "a.example.com"), (23, "b.example.com")]:
        fail_at(NOW - timedelta(hours=hours_ago), url=f"https://{host}/hook")
    fail_at(NOW - timedelta(hours=26), url="https://old.example.com/hook")

    by_host = default_store().statistics(now=NOW).failures_by_host
    assert by_host == {"a.example.com": 2, "b.example.com": 1}
    assert list(by_host) == ["a.example.com", "b.example.com"]  # most failures first


def test_recent_failures_are_the_newest_overall_with_their_error():
    clock = ManualClock(NOW - timedelta(hours=1))
    ids = []
    for n in range(RECENT_FAILURE_SLOTS * index_shards() // 2):
        clock.advance(1)
        ids.append(fail_at(clock.now(), error=f"HTTP 410: gone {n}").id)

    recent = default_store().statistics(now=NOW, recent=5).recent_failures
    assert [note.message_id for note in recent] == list(reversed(ids))[:5]
    newest = recent[0]
    assert newest.error == f"HTTP 410: gone {len(ids) - 1}"
    assert newest.target_host == "ads.example.com"
    assert newest.producer_id == "prd_1"


def test_recount_repairs_counters_that_drifted(put_message):
    put_message(Status.COMPLETED)
    put_message(Status.QUEUED)
    store = default_store()
    store.flush_statistics()
    # Drift, as a process killed with count changes still pending would leave it.
    aws.dynamodb().update_item(
        TableName=store.table_name,
        Key={"pk": {"S": "STATS#COUNTS#3"}, "sk": {"S": "STATS"}},
        UpdateExpression="ADD QUEUED :n",
        ExpressionAttributeValues={":n": {"N": "-1"}},
    )
    assert store.statistics(now=NOW).counts[Status.QUEUED] == 0

    totals = store.recount_status_counters()

    assert totals[Status.QUEUED] == 1
    assert totals[Status.COMPLETED] == 1
    assert store.statistics(now=NOW).counts[Status.QUEUED] == 1


def test_count_changes_are_summed_and_written_once_per_flush(faults):
    store = MessageStore(default_store().table_name, stats_flush_seconds=3600)
    updates = faults.count("dynamodb", "UpdateItem")
    for _ in range(5):
        message = build_message(status=Status.PENDING)
        store.put_new(message)
        entry = HistoryEntry(Status.PENDING, Status.QUEUED, message.created_at, "tests", "sent")
        store.transition(
            message.id,
            producer_id=message.producer_id,
            expected=Status.PENDING,
            target=Status.QUEUED,
            entry=entry,
        )
    assert updates() == 5  # the transitions themselves; no count written yet

    assert store.flush_statistics()
    assert updates() == 6  # +5 PENDING -5 PENDING +5 QUEUED: one UpdateItem (QUEUED +5)
    counts = store.statistics(now=NOW).counts
    assert counts[Status.QUEUED] == 5 and counts[Status.PENDING] == 0


def test_a_count_write_that_fails_stays_pending_for_the_next(faults):
    store = MessageStore(default_store().table_name, stats_flush_seconds=3600)
    store.put_new(build_message(status=Status.QUEUED))
    faults.fail("dynamodb", "UpdateItem", status=500, code="InternalServerError")
    assert not store.flush_statistics()
    faults.clear()
    assert store.statistics(now=NOW).counts[Status.QUEUED] == 1


def test_counts_are_written_in_the_background():
    store = MessageStore(default_store().table_name, stats_flush_seconds=0.2)
    store.put_new(build_message(status=Status.QUEUED))
    reader = MessageStore(default_store().table_name, stats_flush_seconds=3600)  # another process
    wait_until(
        lambda: reader.statistics(now=NOW).counts[Status.QUEUED] == 1,
        timeout=10,
        what="the pending count to be written",
    )


def test_an_empty_table_has_zero_counts_and_no_failures():
    statistics = default_store().statistics(now=NOW)
    assert set(statistics.counts.values()) == {0}
    assert statistics.recent_failures == []
    assert statistics.failures_by_host == {}


def test_recount_statuses_command(put_message):
    from io import StringIO

    from django.core.management import call_command

    put_message(Status.FAILED)
    put_message(Status.COMPLETED)
    out = StringIO()
    call_command("recount_statuses", stdout=out)
    lines = out.getvalue().splitlines()
    assert "FAILED      1" in lines and "COMPLETED   1" in lines
    assert lines[-1] == "recounted 2 message(s)"


def test_attempts_per_hour_come_from_the_attempts_stored(put_message, console):
    from notifications.domain import Attempt

    store = default_store()

    def attempt_at(moment, target, outcome):
        message = put_message(Status.PROCESSING)
        stamp = format_timestamp(moment)
        store.transition(
            message.id,
            producer_id=message.producer_id,
            expected=Status.PROCESSING,
            target=target,
            entry=HistoryEntry(Status.PROCESSING, target, stamp, "worker:tests", outcome),
            attempt=Attempt(1, stamp, 12, outcome, "tests"),
        )

    two_hours_ago = NOW - timedelta(hours=2)
    attempt_at(NOW, Status.COMPLETED, "delivered")
    attempt_at(NOW, Status.COMPLETED, "delivered")
    attempt_at(NOW, Status.QUEUED, "retry")
    attempt_at(two_hours_ago, Status.FAILED, "permanent")
    attempt_at(NOW - timedelta(hours=30), Status.COMPLETED, "delivered")  # out of the window

    hours = store.statistics(now=NOW).attempts_by_hour
    assert len(hours) == 25 and hours[-1].hour == "2026-11-25T14"
    by_hour = {h.hour: (h.delivered, h.failed) for h in hours if h.delivered or h.failed}
    assert by_hour == {"2026-11-25T14": (2, 1), "2026-11-25T12": (0, 1)}

    from notifications import selectors
    from notifications.clock import ManualClock

    summary = selectors.dashboard_summary(clock=ManualClock(NOW))
    assert [h.hour for h in summary.attempts_by_hour][-1] == "2026-11-25T14"
    assert len(summary.attempts_by_hour) == 24
