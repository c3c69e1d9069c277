"""Create a producer and print its API key (last line of stdout, shown once)."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from notifications import services


class Command(BaseCommand):
    help = "Create a producer; its API key is printed once, as the last line, and stored hashed."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            producer, key = services.producer_create(name=options["name"])
        except services.ProducerInvalid as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"producer {producer.name} created (id {producer.public_id}); API key:")
        self.stdout.write(key)
