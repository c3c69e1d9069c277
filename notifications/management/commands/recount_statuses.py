"""Repair the dashboard's counts per status from exact COUNT queries."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from notifications.aws import AWSUnavailable
from notifications.services import status_counters_recount


class Command(BaseCommand):
    help = (
        "Recount messages per status and reset the dashboard's counters. Reads the whole status "
        "index once: run it when traffic is low."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            totals = status_counters_recount()
        except AWSUnavailable as error:
            raise CommandError(f"AWS unavailable: {error}") from error
        for status, count in totals.items():
            self.stdout.write(f"{status.value:<11} {count}")
        self.stdout.write(f"recounted {sum(totals.values())} message(s)")
