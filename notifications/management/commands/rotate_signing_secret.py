"""Add a signing secret to a producer (printed once, as the last line); optionally retire the
older ones once receivers have switched."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from notifications.models import Producer
from notifications.services import signing_secret_rotate


class Command(BaseCommand):
    help = "Add a new webhook signing secret to a producer and print it (last line of stdout)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("producer_name")
        parser.add_argument(
            "--retire-old", action="store_true", help="Remove the producer's older secrets."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            producer = Producer.objects.get(name=options["producer_name"])
        except Producer.DoesNotExist:
            raise CommandError(f"no producer named {options['producer_name']!r}") from None
        secret = signing_secret_rotate(producer=producer, retire_old=options["retire_old"])
        count = producer.signing_secrets.count()
        self.stdout.write(
            f"producer {producer.name}: {count} active signing secret(s); the new one "
            "(shown once) is:"
        )
        self.stdout.write(secret)
