"""Bulk FAILED -> QUEUED with a fresh retry budget (for example after a vendor outage)."""

import getpass
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_datetime

from notifications.aws import AWSUnavailable
from notifications.services import messages_requeue_failed


def _moment(text: str) -> datetime:
    moment = parse_datetime(text)
    if moment is None:
        raise CommandError(f"not an ISO 8601 date-time: {text!r} (e.g. 2026-11-25T08:00:00Z)")
    if moment.tzinfo is None:
        raise CommandError(f"give a time zone (e.g. a trailing Z for UTC): {text!r}")
    return moment


class Command(BaseCommand):
    help = "Requeue FAILED messages that failed in a time window, optionally for one target host."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--since", type=_moment, help="Failed at or after (ISO 8601, with zone)."
        )
        parser.add_argument("--until", type=_moment, help="Failed before (ISO 8601, with zone).")
        parser.add_argument("--target-host", help="Only messages for this host.")
        parser.add_argument("--reason", default="", help="Recorded in each message's history.")
        parser.add_argument("--dry-run", action="store_true", help="List what would be requeued.")

    def handle(self, *args: Any, **options: Any) -> None:
        actor = f"operator:{getpass.getuser()} (requeue_failed)"
        try:
            counts, ids = messages_requeue_failed(
                actor=actor,
                reason=options["reason"] or "bulk requeue from the command line",
                since=options["since"],
                until=options["until"],
                target_host=options["target_host"],
                dry_run=options["dry_run"],
            )
        except AWSUnavailable as error:
            raise CommandError(f"AWS unavailable: {error}") from error
        for message_id in ids:
            self.stdout.write(f"  {message_id}")
        if options["dry_run"]:
            self.stdout.write(f"dry run: {counts['matched']} FAILED message(s) would be requeued")
        else:
            self.stdout.write(
                f"{counts['requeued']} requeued, {counts['skipped_not_failed']} skipped "
                f"(no longer FAILED), {counts['matched']} matched"
            )
