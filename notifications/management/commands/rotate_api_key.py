"""Give a producer a new API key (printed once, as the last line); optionally keep the old key
valid for a while, so its callers can switch without an outage."""

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from notifications.models import Producer
from notifications.services import producer_api_key_rotate


class Command(BaseCommand):
    help = "Rotate a producer's API key and print the new one (last line of stdout)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("producer_name")
        parser.add_argument(
            "--keep-old-hours",
            type=float,
            default=0,
            help="Hours the old key stays valid (default 0: it stops at once).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            producer = Producer.objects.get(name=options["producer_name"])
        except Producer.DoesNotExist:
            raise CommandError(f"no producer named {options['producer_name']!r}") from None
        hours = options["keep_old_hours"]
        if hours < 0:
            raise CommandError("--keep-old-hours must not be negative")
        key = producer_api_key_rotate(
            producer=producer, keep_old_for=timedelta(hours=hours) if hours else None
        )
        until = (
            f"the old key works until {producer.previous_key_valid_until:%Y-%m-%d %H:%M} UTC"
            if hours
            else "the old key no longer works"
        )
        self.stdout.write(f"producer {producer.name}: {until}; the new key (shown once) is:")
        self.stdout.write(key)
