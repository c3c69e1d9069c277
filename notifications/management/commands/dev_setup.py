"""Make sure the development admin user and producer exist (used by `make run`).

Their secrets are read from the environment (`.env`, written by `make run`), so the printed
credentials stay the same from one run to the next. Refuses to run with DEBUG off.
"""

import os
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from notifications import services
from notifications.models import parse_api_key


class Command(BaseCommand):
    help = "Ensure the development admin user and producer exist (development only)."

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError("dev_setup only runs with DEBUG=true (development).")
        username = os.environ.get("HERALD_DEV_ADMIN_USER", "admin")
        password = os.environ.get("HERALD_DEV_ADMIN_PASSWORD")
        api_key = os.environ.get("HERALD_DEV_API_KEY")
        key_id = parse_api_key(api_key or "")
        if not password or not key_id:
            raise CommandError("HERALD_DEV_ADMIN_PASSWORD and HERALD_DEV_API_KEY must be set.")

        user, _ = get_user_model().objects.get_or_create(
            username=username, defaults={"is_staff": True, "is_superuser": True}
        )
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()

        services.producer_ensure_with_key(name="development", api_key=api_key)
        self.stdout.write(f"admin user {username} and producer 'development' are ready")
