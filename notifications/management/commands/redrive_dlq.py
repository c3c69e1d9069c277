"""Move dead letters (queue messages SQS gave up on) back to the work queue."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from notifications.aws import AWSUnavailable
from notifications.queue import decode_body, default_queue


class Command(BaseCommand):
    help = "Move messages from the dead-letter queue back to the work queue and report them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--limit", type=int, default=None, help="Move at most this many.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            moved = default_queue().redrive_dead_letters(limit=options["limit"])
        except AWSUnavailable as error:
            raise CommandError(f"AWS unavailable: {error}") from error
        for body in moved:
            self.stdout.write(f"  {decode_body(body) or 'undecodable body: ' + body[:80]}")
        self.stdout.write(f"moved {len(moved)} dead letter(s) back to the work queue")
