"""Producer use cases: create one, rotate its API key, and manage its webhook signing secrets.
The plain API key and a new signing secret are returned once, to be shown once; the key is
stored hashed."""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction

from notifications.clock import Clock, system_clock
from notifications.models import (
    Producer,
    SigningSecret,
    generate_signing_secret,
    hash_api_key,
    parse_api_key,
)

API_KEY_FIELDS = (
    "key_id",
    "key_hash",
    "previous_key_id",
    "previous_key_hash",
    "previous_key_valid_until",
)


class ProducerInvalid(ValueError):
    """A producer cannot be created as asked (the message says why, for the operator)."""


def producer_create(*, name: str) -> tuple[Producer, str]:
    """Create a producer with its first API key. Returns it and the plain key."""
    name = name.strip()
    if not name:
        raise ProducerInvalid("The producer name must not be empty.")
    if Producer.objects.filter(name=name).exists():
        raise ProducerInvalid(f"A producer named {name!r} exists already.")
    producer = Producer(name=name)
    return producer, producer_api_key_rotate(producer=producer)


def producer_api_key_rotate(
    *,
    producer: Producer,
    keep_old_for: timedelta | None = None,
    clock: Clock = system_clock,
) -> str:
    """Give `producer` a new API key and save it; a producer not saved yet is saved with it.
    The old key stops working at once, or, with `keep_old_for`, after that long, so callers can
    switch over without an outage. Returns the plain key."""
    keep_old_until = clock.now() + keep_old_for if keep_old_for else None
    key = producer.set_new_api_key(keep_old_until=keep_old_until)
    if producer.pk is None:
        producer.save()
    else:
        producer.save(update_fields=[*API_KEY_FIELDS])
    return key


def producer_ensure_with_key(*, name: str, api_key: str) -> Producer:
    """Make sure an active producer `name` exists and accepts exactly `api_key` (development
    setup, where the key comes from the environment so it stays the same between runs)."""
    key_id = parse_api_key(api_key)
    if key_id is None:
        raise ProducerInvalid("Not an API key in Herald's format.")
    producer, _ = Producer.objects.get_or_create(
        name=name, defaults={"key_id": key_id, "key_hash": hash_api_key(api_key)}
    )
    producer.key_id, producer.key_hash, producer.is_active = key_id, hash_api_key(api_key), True
    producer.previous_key_id, producer.previous_key_hash = "", ""
    producer.previous_key_valid_until = None
    producer.save()
    return producer


def signing_secret_rotate(*, producer: Producer, retire_old: bool = False) -> str:
    """Add a new signing secret to `producer` and return it (the only time it is shown in full).

    Without `retire_old` the older secrets stay, so deliveries carry one signature per secret and
    receivers can move to the new one without a gap; with it, every older secret is removed.
    """
    with transaction.atomic():
        created = SigningSecret.objects.create(producer=producer, secret=generate_signing_secret())
        if retire_old:
            signing_secrets_retire_old(producer=producer)
    return created.secret


def signing_secrets_retire_old(*, producer: Producer) -> int:
    """Remove every signing secret of `producer` but the newest: the end of a rotation, once
    receivers verify with the new secret. Returns how many were removed."""
    newest = producer.signing_secrets.order_by("-created_at", "-id").first()
    if newest is None:
        return 0
    deleted, _ = SigningSecret.objects.filter(producer=producer).exclude(pk=newest.pk).delete()
    return deleted
