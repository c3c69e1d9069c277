"""Create a producer and print its API key (last line of stdout, shown once)."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from notifications.models import Producer


class Command(BaseCommand):
    help = "Create a producer; its API key is printed once, as the last line, and stored hashed."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["name"].strip()
        if not name:
            raise CommandError("The producer name must not be empty.")
        if Producer.objects.filter(name=name).exists():
            raise CommandError(f"A producer named {name!r} exists already.")
        producer = Producer(name=name)
        key = producer.set_new_api_key()
        producer.save()
        self.stdout.write(f"producer {name} created (id {producer.public_id}); API key:")
        self.stdout.write(key)
