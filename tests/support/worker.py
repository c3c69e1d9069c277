"""An in-process Worker wired to the session's moto server, with short timeouts for tests; ways
to drive it (one queue message at a time, or its own receive loop on a thread)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.conf import settings

from notifications import selectors
from notifications.clock import Clock, system_clock
from notifications.delivery.addresses import AddressPolicy
from notifications.delivery.admission import Admission
from notifications.delivery.backoff import RetrySchedule
from notifications.delivery.host_guard import HostGuard
from notifications.delivery.http import DeliveryClient
from notifications.delivery.policy import OutcomePolicy, parse_status_set
from notifications.domain import Status
from notifications.queue import default_queue
from notifications.store import default_store
from notifications.worker import Worker
from tests.support.waiting import wait_until


@pytest.fixture
def make_worker(aws: str, transactional_db: None) -> Callable[..., Worker]:
    """Workers read producers' signing secrets from Django's database on their own threads,
    hence a transactional database (committed rows are visible to every connection)."""

    def build(
        *,
        delays: tuple[float, ...] = (0.0,),
        max_attempts: int = 5,
        timeout: float = 2.0,
        clock: Clock = system_clock,
        worker_id: str = "test-worker",
        lease: float = 10.0,
        concurrency: int = 4,
        max_waiting: int = 16,
        ack_flush_seconds: float = 0.2,
        host_guard: bool = False,
        refresh_seconds: float = 0.2,
        slot_lease_seconds: float = 10.0,
    ) -> Worker:
        admission = None
        if host_guard:  # as Worker.from_settings builds it, with quicker refreshes
            store = default_store()
            admission = Admission(
                max_per_host=concurrency,
                max_retries=concurrency,
                hosts=HostGuard(
                    states=store.hosts,
                    allowances=store.allowances,
                    load_policies=selectors.host_policies,
                    defaults=selectors.default_host_limits(),
                    worker_id=worker_id,
                    refresh_seconds=refresh_seconds,
                    slot_lease_seconds=slot_lease_seconds,
                    probe_lease_seconds=timeout + 5,
                ),
            )
        return Worker(
            concurrency=concurrency,
            poll_seconds=1,
            lease_seconds=lease,
            visibility_timeout=30,
            shutdown_grace=10,
            client=DeliveryClient(
                connect_timeout=1.0,
                total_timeout=timeout,
                pool_size=4,
                address_policy=AddressPolicy.from_cidrs(["127.0.0.0/8"]),  # the local vendor
            ),
            policy=OutcomePolicy(parse_status_set(settings.DELIVERY_RETRYABLE_STATUSES)),
            schedule=RetrySchedule(
                delays=delays, max_attempts=max_attempts, max_age_seconds=86400, jitter=0.0
            ),
            store=default_store(),
            queue=default_queue(),
            clock=clock,
            worker_id=worker_id,
            max_waiting=max_waiting,
            ack_flush_seconds=ack_flush_seconds,
            admission=admission,
        )

    return build


def run_until(worker: Worker, done: Callable[[], bool], timeout: float = 20.0) -> list[str]:
    """Receive and handle queue messages synchronously until `done()` or the timeout; returns
    the outcome of each queue message handled."""
    outcomes: list[str] = []

    def handle_a_round() -> bool:
        for work in worker.queue.receive(max_messages=10, wait_seconds=1):
            outcomes.append(worker.handle(work))
        return done()

    if not done():  # no pause between rounds: the receive itself long-polls
        wait_until(
            handle_a_round, timeout=timeout, what=lambda: f"done; outcomes {outcomes}", interval=0
        )
    return outcomes


@contextmanager
def running(worker: Worker) -> Iterator[threading.Thread]:
    """The worker's own receive loop on a background thread, as `run_worker` runs it; on the
    way out it is stopped and given time to drain (the caller may check the thread ended)."""
    thread = threading.Thread(target=worker.run, name="test-worker", daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        worker.stop()
        thread.join(timeout=30)


def status_of(message_id: str) -> Any:
    return default_store().get(message_id).status


def finished(message_id: str) -> Callable[[], bool]:
    """A condition: the message is COMPLETED or FAILED."""
    return lambda: status_of(message_id) in (Status.COMPLETED, Status.FAILED)
