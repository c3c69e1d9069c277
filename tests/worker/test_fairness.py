"""A hanging vendor occupies at most its per-host share; other hosts keep flowing."""

from __future__ import annotations

import time

from notifications.delivery.admission import Admission
from notifications.domain import Status
from notifications.queue import default_queue
from tests.support.submission import submit
from tests.support.waiting import wait_until
from tests.support.worker import running, status_of
from tests.vendor import Answer, Vendor


def test_slow_host_is_capped_and_fast_host_is_not_held_up(make_worker, vendor):
    slow_vendor = Vendor().start()
    try:
        slow_port = slow_vendor.server.server_address[1]
        fast_port = vendor.server.server_address[1]
        slow_vendor.script("/hang", then=Answer(200, delay=8.0))
        slow_ids = [submit(f"http://slow.test:{slow_port}/hang") for _ in range(6)]
        fast_ids = [submit(f"http://fast.test:{fast_port}/ok") for _ in range(8)]

        worker = make_worker(concurrency=6, timeout=10.0)
        worker.admission = Admission(max_per_host=2, max_retries=6)
        worker.client.resolver = lambda host, port: ["127.0.0.1"]
        started = time.monotonic()
        with running(worker):
            wait_until(
                lambda: all(status_of(i) == Status.COMPLETED for i in fast_ids),
                timeout=20,
                what="the fast messages (held up?)",
            )
            fast_done = time.monotonic() - started
            slow_calls_meanwhile = len(slow_vendor.received)
            slow_in_progress = [i for i in slow_ids if status_of(i) != Status.COMPLETED]
    finally:
        slow_vendor.stop()

    # All 8 fast deliveries finished while the slow host was still busy with its first calls:
    # with 6 slots and no cap, the 6 slow messages could have taken every slot for 8 s.
    assert fast_done < 8.0, fast_done
    assert slow_calls_meanwhile <= 2  # never more than its cap of concurrent calls
    assert len(slow_in_progress) == 6
    assert default_queue().depth()["dead_letters"] == 0
