"""Run a delivery worker until SIGTERM/SIGINT, then drain and exit 0. Its /metrics, /livez and
/readyz are served on WORKER_METRICS_PORT while it runs. Further signals during the drain change
nothing: the worker still exits within its grace period (WORKER_SHUTDOWN_GRACE)."""

import os
import sys
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from notifications import aws_probes, metrics
from notifications.startup import freeze_startup_objects
from notifications.status_server import start_status_server
from notifications.worker import Worker
from notifications.worker.stop_signals import stop_on_signals


class Command(BaseCommand):
    help = "Deliver queued messages: long-poll SQS, call targets, record attempts, retry."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--concurrency",
            type=int,
            default=None,
            help="Deliveries in flight (WORKER_CONCURRENCY).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        worker = Worker.from_settings(concurrency=options["concurrency"])
        metrics.track_worker_load(
            in_flight=lambda: worker.in_flight, waiting=lambda: worker.waiting
        )
        status = None
        if settings.WORKER_METRICS_PORT:  # 0: not served
            status = start_status_server(
                host=settings.WORKER_METRICS_HOST,
                port=settings.WORKER_METRICS_PORT,
                liveness=worker.is_live,
                readiness=aws_probes.readiness,
                collectors=(metrics.QueueDepthCollector(aws_probes.queue_depths),),
            )

        def request_stop(signum: int, count: int) -> None:
            # On the signals' own thread, not in the signal handler (see stop_signals).
            if count == 1:
                self.stderr.write(f"signal {signum}: finishing deliveries in flight, then exiting")
            else:
                self.stderr.write(
                    f"signal {signum}: already stopping (grace period {worker.shutdown_grace:g} s)"
                )
            worker.stop()

        stop_on_signals(request_stop)
        self.stdout.write(f"worker {worker.worker_id}: concurrency {worker.concurrency}")
        freeze_startup_objects()
        try:
            drained = worker.run()
        finally:
            if status is not None:
                status.stop()
        if not drained:
            self.stderr.write("grace period over; unfinished deliveries will be redelivered")
            sys.stdout.flush()
            sys.stderr.flush()
            # Python's exit would join the delivery threads still in their calls; their queue
            # messages come back when the visibility timeout ends and their leases expire.
            os._exit(0)
        sys.exit(0)
