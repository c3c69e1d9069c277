"""Re-send what a crash or an AWS fault left behind (PENDING, expired leases, lost queue messages)."""

import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from notifications.aws import AWSUnavailable
from notifications.domain import Message
from notifications.services import messages_reconcile

ROWS = [
    ("PENDING, never queued", "pending_found", "pending_queued"),
    ("PROCESSING, lease expired", "expired_leases_found", "expired_leases_requeued"),
    ("QUEUED, queue message lost", "overdue_queued_found", "overdue_queued_resent"),
]


class Command(BaseCommand):
    help = "Find messages stuck by crashes or AWS faults and put them back on the queue."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Report only; change nothing.")
        parser.add_argument(
            "--older-than",
            type=float,
            default=settings.RECONCILE_OLDER_THAN,
            help="Seconds a PENDING message (or an overdue QUEUED one) must have waited.",
        )
        parser.add_argument(
            "--loop",
            type=float,
            nargs="?",
            const=settings.RECONCILE_INTERVAL,
            metavar="SECONDS",
            help="Run again every SECONDS (default RECONCILE_INTERVAL) until stopped.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        while True:
            try:
                self.run_once(
                    options["older_than"], options["dry_run"], quiet=bool(options["loop"])
                )
            except AWSUnavailable as error:
                self.stderr.write(f"reconcile pass failed, AWS unavailable: {error}")
            if not options["loop"]:
                return
            try:
                time.sleep(options["loop"])
            except KeyboardInterrupt:
                return

    def run_once(self, older_than: float, dry_run: bool, *, quiet: bool) -> None:
        """One pass and its summary table (in a loop, only passes that found something)."""
        seen = 0

        def progress(kind: str, message: Message) -> None:
            nonlocal seen
            seen += 1
            if seen % 100 == 0:
                self.stdout.write(f"  … {seen} stuck messages so far")

        counts = messages_reconcile(older_than=older_than, dry_run=dry_run, progress=progress)
        if quiet and not counts:
            return
        title = "reconcile (dry run, nothing changed)" if dry_run else "reconcile"
        self.stdout.write(f"{title}:")
        self.stdout.write(f"  {'state':<28} {'found':>7} {'fixed':>7}")
        for label, found, fixed in ROWS:
            self.stdout.write(f"  {label:<28} {counts[found]:>7} {counts[fixed]:>7}")
        for key in ("skipped_changed_meanwhile", "errors"):
            if counts[key]:
                self.stdout.write(f"  {key.replace('_', ' ')}: {counts[key]}")
