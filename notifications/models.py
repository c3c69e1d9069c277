"""Django-side records. Messages live in DynamoDB; only producers (the systems allowed to submit)
live in Django's database, so operators manage them in the admin."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import models

from notifications.clock import system_clock
from notifications.hosts import InvalidHost, normalize_host

API_KEY_PREFIX = "hrld"
PUBLIC_ID_PREFIX = "prd_"


def producer_public_id(pk: int) -> str:
    """The id stored on a producer's messages and shown to it: stable across key rotation and
    renames. `producer_pk` is its inverse; nothing else builds or parses these ids."""
    return f"{PUBLIC_ID_PREFIX}{pk}"


def producer_pk(public_id: str) -> int | None:
    """The database key behind a public producer id, or None when it is not one."""
    digits = public_id.removeprefix(PUBLIC_ID_PREFIX)
    if digits == public_id or not digits.isdigit():
        return None
    return int(digits)


def hash_api_key(key: str) -> str:
    # API keys carry 256 bits of randomness, so a fast hash is enough: there is nothing to
    # brute-force, and a slow KDF would add latency to every API call.
    return hashlib.sha256(key.encode()).hexdigest()


def generate_api_key() -> tuple[str, str]:
    """A new key and its public lookup id: `hrld_<lookup id>_<secret>`."""
    lookup_id = secrets.token_hex(6)
    return f"{API_KEY_PREFIX}_{lookup_id}_{secrets.token_urlsafe(32)}", lookup_id


def parse_api_key(key: str) -> str | None:
    """The lookup id of a well-formed key, or None."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != API_KEY_PREFIX or len(parts[1]) != 12 or not parts[2]:
        return None
    return parts[1]


class Producer(models.Model):
    """A business system that submits notifications with an API key."""

    name = models.CharField(max_length=100, unique=True)
    is_active = models.BooleanField(default=True)
    key_id = models.CharField(max_length=12, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    # The key before the last rotation, still accepted until `previous_key_valid_until`.
    previous_key_id = models.CharField(max_length=12, blank=True, default="", editable=False)
    previous_key_hash = models.CharField(max_length=64, blank=True, default="", editable=False)
    previous_key_valid_until = models.DateTimeField(null=True, blank=True, editable=False)
    intake_rate = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Submissions per second this producer may make (empty: the INTAKE_RATE setting).",
    )
    intake_burst = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Submissions it may make at once above its rate (empty: INTAKE_BURST).",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_authenticated(self) -> bool:
        # DRF's IsAuthenticated reads this from request.user, which is the producer for API calls.
        return True

    @property
    def public_id(self) -> str:
        """The id stored on messages: stable across key rotation and renames."""
        return producer_public_id(self.pk)

    def set_new_api_key(self, *, keep_old_until: datetime | None = None) -> str:
        """Replace the key; return the plain key (shown once, never stored). With
        `keep_old_until`, the current key stays valid until then (a rotation without an outage)."""
        if keep_old_until is not None and self.key_id:
            self.previous_key_id, self.previous_key_hash = self.key_id, self.key_hash
            self.previous_key_valid_until = keep_old_until
        else:
            self.previous_key_id, self.previous_key_hash = "", ""
            self.previous_key_valid_until = None
        key, self.key_id = generate_api_key()
        self.key_hash = hash_api_key(key)
        return key

    def check_api_key(self, key: str, *, now: datetime | None = None) -> bool:
        """Whether `key` is this producer's current key, or its previous one within its grace
        period (judged at `now`, by default the system clock's)."""
        now = now or system_clock.now()
        digest = hash_api_key(key)
        if hmac.compare_digest(self.key_hash, digest):
            return True
        return (
            bool(self.previous_key_hash)
            and self.previous_key_valid_until is not None
            and now < self.previous_key_valid_until
            and hmac.compare_digest(self.previous_key_hash, digest)
        )


class HostPolicy(models.Model):
    """What one target host may take from the whole fleet of workers, and when its circuit
    opens. An empty field takes the setting's default; 0 means no limit (no circuit breaking for
    the threshold). Workers read policies every HOST_STATE_REFRESH_SECONDS."""

    host = models.CharField(
        max_length=253,
        unique=True,
        help_text="As in the target URLs: host name or address, no scheme or port.",
    )
    max_in_flight = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Calls in flight to this host across all workers (empty: HOST_MAX_IN_FLIGHT).",
    )
    max_per_second = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Calls per second to this host across all workers (empty: HOST_MAX_PER_SECOND).",
    )
    failure_threshold = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Consecutive failed calls that open the circuit (empty: "
        "CIRCUIT_FAILURE_THRESHOLD; 0: never).",
    )
    cool_off_seconds = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Seconds an opened circuit waits before one probe call (empty: "
        "CIRCUIT_COOL_OFF_SECONDS); doubled after each failed probe.",
    )
    note = models.CharField(max_length=200, blank=True, default="", help_text="Why, for people.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["host"]
        verbose_name_plural = "host policies"

    def __str__(self) -> str:
        return self.host

    def clean(self) -> None:
        try:
            self.host = normalize_host(self.host)
        except InvalidHost as error:
            raise ValidationError({"host": str(error)}) from None


class Message(models.Model):
    """Permission anchor only: messages live in DynamoDB, never in this database.

    It exists so that operators can be granted `notifications.view_message`,
    `notifications.requeue_message`, `notifications.deliver_now` and `notifications.pause_host`
    like any other Django permission.
    """

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("view_message", "Can view messages in the operator console"),
            ("requeue_message", "Can requeue failed messages"),
            ("deliver_now", "Can pull scheduled retries forward (deliver now)"),
            ("pause_host", "Can pause and resume target hosts"),
        ]

    def __str__(self) -> str:
        return "message permissions"


SIGNING_SECRET_PREFIX = "whsec_"  # noqa: S105 - a format prefix, not a secret


def generate_signing_secret() -> str:
    """Standard Webhooks format: `whsec_` + base64 of 32 random bytes."""
    return SIGNING_SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


class SigningSecret(models.Model):
    """A producer's webhook signing secret. While a producer has several (rotation), every
    delivery carries one signature per secret, so receivers can switch over without a gap.

    The secret must be usable to sign, so it cannot be stored hashed; it is shown masked
    everywhere except once, when it is created.
    """

    producer = models.ForeignKey(Producer, on_delete=models.CASCADE, related_name="signing_secrets")
    secret = models.CharField(max_length=100, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return self.masked

    @property
    def masked(self) -> str:
        return f"{self.secret[:10]}…" if self.secret else ""
