"""`DELIVERY_ALLOWED_NETWORKS`, parsed once.

The address policy is built when Django starts (`NotificationsConfig.ready`), so a typo in the
setting stops the process with a message naming the bad entry instead of failing every
submission; afterwards each submission reuses it. It is built again only when the setting changes
(Django's `setting_changed` signal, sent when tests override settings).
"""

from __future__ import annotations

import functools
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

from notifications.delivery.addresses import AddressPolicy


@functools.cache
def allowed_networks_policy() -> AddressPolicy:
    """The address policy with the configured exemptions. Raises ImproperlyConfigured when an
    entry of DELIVERY_ALLOWED_NETWORKS is not a network."""
    try:
        return AddressPolicy.from_cidrs(settings.DELIVERY_ALLOWED_NETWORKS)
    except ValueError as error:
        raise ImproperlyConfigured(f"DELIVERY_ALLOWED_NETWORKS: {error}") from None


@receiver(setting_changed)
def _forget_policy(*, setting: str, **kwargs: Any) -> None:
    if setting == "DELIVERY_ALLOWED_NETWORKS":
        allowed_networks_policy.cache_clear()
