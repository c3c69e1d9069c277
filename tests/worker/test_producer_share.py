"""A flood from one producer cannot take the slots another active producer's traffic needs."""

from __future__ import annotations

import json
import time

from notifications.delivery.admission import Admission
from notifications.domain import Status
from notifications.services import Submission, message_submit
from tests.support.waiting import wait_until
from tests.support.worker import running, status_of
from tests.vendor import Answer, Vendor


def submit_for(producer_id: str, url: str) -> str:
    submission = Submission(
        target_url=url, method="POST", headers={}, body=json.dumps({}), body_is_json=True
    )
    return message_submit(producer_id=producer_id, submission=submission).message.id


def test_a_flooding_producer_leaves_slots_for_an_active_one(make_worker, vendor):
    slow_vendor = Vendor().start()
    try:
        slow_port = slow_vendor.server.server_address[1]
        fast_port = vendor.server.server_address[1]
        slow_vendor.script("/hang", then=Answer(200, delay=8.0))
        worker = make_worker(concurrency=4, timeout=10.0)
        worker.admission = Admission(max_per_host=4, max_retries=4, max_per_producer=2)
        worker.client.resolver = lambda host, port: ["127.0.0.1"]
        with running(worker):
            # The steady producer is active...
            first = submit_for("prd_steady", f"http://steady.test:{fast_port}/ok")
            wait_until(lambda: status_of(first) == Status.COMPLETED, timeout=20, what="first")
            # ...when the other floods four slots' worth of hanging calls (distinct sites).
            flood = [
                submit_for("prd_flood", f"http://flood{n}.test:{slow_port}/hang") for n in range(6)
            ]
            wait_until(lambda: len(slow_vendor.received) >= 2, timeout=20, what="the flood")
            started = time.monotonic()
            steady = [
                submit_for("prd_steady", f"http://steady.test:{fast_port}/ok") for _ in range(3)
            ]
            wait_until(
                lambda: all(status_of(i) == Status.COMPLETED for i in steady),
                timeout=20,
                what="the steady producer's messages (held up by the flood?)",
            )
            waited = time.monotonic() - started
            flood_calls = len(slow_vendor.received)
            unfinished = [i for i in flood if status_of(i) != Status.COMPLETED]
    finally:
        slow_vendor.stop()
    # Without the share the flood holds all 4 slots for 8 s and the steady messages wait.
    assert waited < 6.0, waited
    assert flood_calls <= 2
    assert len(unfinished) == 6
