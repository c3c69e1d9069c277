"""Standard Webhooks signatures (https://www.standardwebhooks.com/): pure functions, no I/O.

`webhook-signature` = space-separated `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`, one per
active secret; the key is the base64-decoded part of `whsec_<base64>`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable

from notifications.models import SIGNING_SECRET_PREFIX


def secret_key(secret: str) -> bytes:
    encoded = (
        secret[len(SIGNING_SECRET_PREFIX) :] if secret.startswith(SIGNING_SECRET_PREFIX) else secret
    )
    return base64.b64decode(encoded)


def sign(secret: str, message_id: str, timestamp: int, body: str) -> str:
    payload = f"{message_id}.{timestamp}.{body}".encode()
    digest = hmac.new(secret_key(secret), payload, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_headers(
    secrets: Iterable[str], message_id: str, timestamp: int, body: str | None
) -> dict[str, str]:
    """The three webhook-* headers, or none when there is no secret."""
    signatures = [sign(secret, message_id, timestamp, body or "") for secret in secrets]
    if not signatures:
        return {}
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signatures),
    }
