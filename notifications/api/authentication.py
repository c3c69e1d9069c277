"""Producers authenticate with `Authorization: Bearer <api key>`; keys are stored hashed."""

from __future__ import annotations

from django.db.models import Q
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from notifications.clock import system_clock
from notifications.models import Producer, parse_api_key


class ProducerKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Producer, None] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None  # DRF answers 401 NotAuthenticated with our WWW-Authenticate header
        scheme, _, key = header.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise AuthenticationFailed("Use 'Authorization: Bearer <api key>'.")
        key_id = parse_api_key(key)
        producer = (
            Producer.objects.filter(Q(key_id=key_id) | Q(previous_key_id=key_id)).first()
            if key_id
            else None
        )
        # The same answer for an unknown key and a wrong one: nothing to learn from the difference.
        if producer is None or not producer.check_api_key(key, now=system_clock.now()):
            raise AuthenticationFailed("Invalid API key.")
        if not producer.is_active:
            raise AuthenticationFailed("This producer is deactivated.")
        return producer, None

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="herald"'
