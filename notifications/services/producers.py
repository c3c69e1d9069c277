"""Producer use cases: create one, rotate its API key, and manage its webhook signing secrets.
The plain API key and a new signing secret are returned once, to be shown once; the key is
stored hashed."""

from __future__ import annotations

from django.db import transaction

from notifications.models import (
    Producer,
    SigningSecret,
    generate_signing_secret,
    hash_api_key,
    parse_api_key,
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


def producer_api_key_rotate(*, producer: Producer) -> str:
    """Give `producer` a new API key (the old one stops working at once) and save it; a producer
    not saved yet is saved with it. Returns the plain key."""
    key = producer.set_new_api_key()
    if producer.pk is None:
        producer.save()
    else:
        producer.save(update_fields=["key_id", "key_hash"])
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
