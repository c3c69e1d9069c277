"""Host policies and the circuit across real worker processes: three `run_worker` processes
deliver to one local vendor; the policy is set with `manage.py host policy` while they run.

- Limits: without a policy (the control) the vendor sees more than K calls at once and more than
  R a second; with a policy of at most K in flight and R a second it sees at most K at once, and
  its rate over the run stays within RATE_TOLERANCE of R.
- Circuit: a vendor that fails every call opens the circuit after the threshold; while it is
  open the vendor receives the probes and nothing else; when it recovers every waiting message is
  delivered and none failed for lack of retry budget.

Each test prints its figures (run with -s to see them).
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from notifications.domain import Status, parse_timestamp
from notifications.hosts import Transition
from notifications.store import default_store
from tests.support.processes import manage, start_worker, worker_environment
from tests.support.submission import submit
from tests.support.waiting import wait_until
from tests.support.worker import status_of
from tests.vendor import Answer, Received

pytestmark = pytest.mark.e2e

HOST = "127.0.0.1"
WORKERS = 3
K = 2  # calls in flight
R = 4  # calls per second
MESSAGES = 32
# Over the run, the vendor's rate (calls after the first / time from the first to the last) stays
# within this share of R: tokens come in one-second windows, so the first window can add up to R
# calls within less than a second, and a token taken late in a window can go unused.
RATE_TOLERANCE = 0.2
SETTINGS = {
    "HOST_STATE_REFRESH_SECONDS": "0.5",
    "HOST_SLOT_LEASE_SECONDS": "10",
    "DELIVERY_TIMEOUT": "5",
    "DELIVERY_LEASE_SECONDS": "15",
}


@contextmanager
def workers(endpoint: str, tmp_path: Path, **overrides: str) -> Iterator[list[subprocess.Popen]]:
    started = [
        start_worker(endpoint, tmp_path, f"worker-{n}", **{**SETTINGS, **overrides})
        for n in range(WORKERS)
    ]
    try:
        yield started
    finally:
        for process in started:
            process.send_signal(signal.SIGTERM)
        for process in started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def rate(calls: list[Received]) -> float:
    times = sorted(call.at for call in calls)
    return (len(times) - 1) / (times[-1] - times[0])


def deliver_all(url: str, path: str, vendor, count: int = MESSAGES) -> list[Received]:
    ids = [submit(url) for _ in range(count)]
    wait_until(
        lambda: all(status_of(message_id) == Status.COMPLETED for message_id in ids),
        timeout=90,
        what=lambda: f"{count} deliveries ({len(vendor.requests_to(path))} calls so far)",
        interval=0.5,
    )
    return vendor.requests_to(path)


def test_three_workers_keep_a_hosts_limits_and_exceed_them_without_a_policy(aws, vendor, tmp_path):
    env = worker_environment(aws, tmp_path, **SETTINGS)
    with workers(aws, tmp_path):
        # The control: no policy (the defaults set no fleet-wide limit).
        control = deliver_all(
            vendor.script("/control", then=Answer(200, delay=0.3)), "/control", vendor
        )
        # The policy, set while the workers run.
        output = manage(
            env, "host", "policy", HOST, "--max-in-flight", str(K), "--max-per-second", str(R)
        )
        assert f"{HOST}: in flight {K}" in output
        time.sleep(2 * float(SETTINGS["HOST_STATE_REFRESH_SECONDS"]))  # the workers read it
        limited = deliver_all(
            vendor.script("/limited", then=Answer(200, delay=0.3)), "/limited", vendor
        )

    figures = {
        "control": (vendor.max_active["/control"], rate(control)),
        "limited": (vendor.max_active["/limited"], rate(limited)),
    }
    print(f"\nvendor's most calls at once and calls per second, K={K} R={R}: {figures}")
    assert vendor.max_active["/limited"] <= K
    assert abs(rate(limited) - R) <= RATE_TOLERANCE * R, figures
    assert vendor.max_active["/control"] > K and rate(control) > R * (1 + RATE_TOLERANCE), figures


def test_a_failing_vendor_gets_only_probes_while_open_and_every_message_is_delivered(
    aws, vendor, tmp_path
):
    env = worker_environment(aws, tmp_path, **SETTINGS)
    manage(env, "migrate", "-v", "0")
    manage(env, "host", "policy", HOST, "--failure-threshold", "3", "--cool-off", "1")
    url = vendor.script("/down", then=Answer(503, body=b"down"))
    ids = [submit(url) for _ in range(9)]

    def kinds() -> list[Transition]:
        return [e.transition for e in reversed(default_store().hosts.events(HOST, limit=100))]

    overrides = {"RETRY_MAX_ATTEMPTS": "20", "CIRCUIT_MAX_COOL_OFF_SECONDS": "4"}
    with workers(aws, tmp_path, **overrides):
        wait_until(
            lambda: kinds().count(Transition.REOPENED) >= 2,
            timeout=60,
            what=lambda: f"two failed probes (events {kinds()})",
            interval=0.5,
        )
        vendor.script("/down", then=Answer(200))
        wait_until(
            lambda: all(status_of(message_id) == Status.COMPLETED for message_id in ids),
            timeout=60,
            what=lambda: f"every message delivered (events {kinds()})",
            interval=0.5,
        )

    events = list(reversed(default_store().hosts.events(HOST, limit=100)))
    transitions = [event.transition for event in events]
    probes = transitions.count(Transition.HALF_OPENED)
    opened_at = parse_timestamp(events[0].at).timestamp()
    closed_at = parse_timestamp(events[-1].at).timestamp()
    calls = vendor.requests_to("/down")
    # A call let through just before the open can arrive a moment after it: hence the 0.2 s.
    while_open = [call for call in calls if opened_at + 0.2 < call.wall <= closed_at]
    messages = [default_store().get(message_id) for message_id in ids]
    print(
        f"\ncircuit: {[t.value for t in transitions]}; calls before the open "
        f"{sum(call.wall <= opened_at + 0.2 for call in calls)}, while open {len(while_open)}, "
        f"after {sum(call.wall > closed_at for call in calls)}"
    )
    assert transitions[0] == Transition.OPENED and transitions[-1] == Transition.CLOSED
    assert probes == transitions.count(Transition.REOPENED) + 1
    assert len(while_open) == probes, (
        [(e.transition.value, parse_timestamp(e.at).timestamp()) for e in events],
        [(c.wall, c.headers.get("Herald-Message-Id")) for c in calls],
    )
    assert all(message.status == Status.COMPLETED for message in messages)
    assert all(message.attempt_count < 20 for message in messages)
    assert sum(message.attempt_count for message in messages) == len(calls)
