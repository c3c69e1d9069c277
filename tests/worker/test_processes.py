"""Real worker processes: kill -9 mid-delivery, and SIGTERM with deliveries in flight."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from notifications.domain import Status
from tests.support.processes import start_worker
from tests.support.submission import submit
from tests.support.waiting import wait_until
from tests.support.worker import status_of
from tests.vendor import Answer

pytestmark = pytest.mark.e2e


def test_kill_9_mid_delivery_then_another_worker_completes_it(aws, vendor, tmp_path):
    url = vendor.script("/slow", Answer(200, delay=2.5), Answer(200))
    message_id = submit(url)
    timeouts = {"DELIVERY_TIMEOUT": "3", "DELIVERY_LEASE_SECONDS": "8"}

    first = start_worker(aws, tmp_path, "first", **timeouts)
    try:
        wait_until(
            lambda: vendor.requests_to("/slow"), timeout=30, what="the first delivery to start"
        )
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        first.kill()
    assert status_of(message_id) == Status.PROCESSING

    second = start_worker(aws, tmp_path, "second", **timeouts)
    try:
        wait_until(
            lambda: status_of(message_id) == Status.COMPLETED, timeout=40, what="the takeover"
        )
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)

    calls = vendor.requests_to("/slow")
    assert len(calls) == 2
    assert (
        calls[0].headers["Herald-Message-Id"] == calls[1].headers["Herald-Message-Id"] == message_id
    )
    from notifications.store import default_store

    history = default_store().get(message_id).history
    assert any("expired" in entry.reason for entry in history)


def test_sigterm_lets_deliveries_in_flight_finish_and_exits_0(aws, vendor, tmp_path):
    url = vendor.script("/inflight", then=Answer(200, delay=2.0))
    ids = [submit(url) for _ in range(3)]

    worker = start_worker(aws, tmp_path, "graceful")
    try:
        wait_until(
            lambda: len(vendor.requests_to("/inflight")) == 3, timeout=30, what="three deliveries"
        )
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=30)
    finally:
        worker.kill()
    assert code == 0, (tmp_path / "graceful.log").read_text()
    assert [status_of(message_id) for message_id in ids] == [Status.COMPLETED] * 3


def test_more_stop_signals_while_the_main_thread_holds_a_lock_still_drain_and_exit_0(
    aws, vendor, tmp_path
):
    """SIGTERM twice a millisecond apart (as the soak sends it), Ctrl-C pressed again: the later
    signals may come while the main thread holds a lock, which once hung the worker for good (the
    handler of the second signal waited for a lock the first one held). The launcher makes that
    timing certain: after the first SIGTERM, SIGINTs arrive just as the main thread has taken a
    lock (tests/support/signal_at_lock.py)."""
    grace = 5
    url = vendor.script("/again", then=Answer(200, delay=2.0))
    ids = [submit(url) for _ in range(3)]

    worker = start_worker(
        aws,
        tmp_path,
        "again",
        launcher=("-m", "tests.support.signal_at_lock"),
        WORKER_SHUTDOWN_GRACE=str(grace),
    )
    try:
        wait_until(
            lambda: len(vendor.requests_to("/again")) == 3, timeout=30, what="three deliveries"
        )
        worker.send_signal(signal.SIGTERM)
        time.sleep(0.001)
        worker.send_signal(signal.SIGTERM)
        try:
            code = worker.wait(timeout=grace + 10)
        except subprocess.TimeoutExpired:
            code = None
    finally:
        worker.kill()
    log = (tmp_path / "again.log").read_text()
    assert code == 0, f"no exit within the grace period and 10 s (exit code {code}):\n{log}"
    assert f"signal {signal.SIGINT.value}: already stopping" in log  # the launcher's signals came
    assert "stopped (drained)" in log
    assert [status_of(message_id) for message_id in ids] == [Status.COMPLETED] * 3


def test_sigterm_sends_the_pending_deletes_before_exit(aws, vendor, tmp_path):
    from notifications.queue import default_queue

    url = vendor.script("/acks", then=Answer(200, delay=1.0))
    ids = [submit(url) for _ in range(3)]
    # A flush interval far longer than the run (60 s, a tenth of this visibility timeout) and
    # fewer deletes than a batch: only the stop can send them.
    worker = start_worker(
        aws, tmp_path, "acks", SQS_VISIBILITY_TIMEOUT="600", WORKER_ACK_FLUSH_SECONDS="60"
    )
    try:
        wait_until(
            lambda: len(vendor.requests_to("/acks")) == 3, timeout=30, what="three deliveries"
        )
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=30)
    finally:
        worker.kill()
    assert code == 0, (tmp_path / "acks.log").read_text()
    assert [status_of(message_id) for message_id in ids] == [Status.COMPLETED] * 3
    depth = default_queue().depth()
    assert depth["in_flight"] == depth["visible"] == 0  # deleted, not waiting out 600 s
