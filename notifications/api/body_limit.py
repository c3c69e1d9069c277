"""The API's body size limit, enforced in front of Django (WSGI middleware, see config/wsgi.py).

Django cannot do it alone: a body over DATA_UPLOAD_MAX_MEMORY_SIZE raises inside DRF's parsing
(it used to come out as a 500), and a chunked body (no Content-Length) is invisible to Django under
WSGI, which reads Content-Length bytes, so a chunked request looked empty. Here every request under
/api/ is measured first:

- a declared Content-Length over MAX_MESSAGE_BYTES is answered 413 at once;
- a chunked body is read up to MAX_MESSAGE_BYTES + 1 bytes: over the limit is 413, otherwise Django
  gets it as an ordinary body with its Content-Length.

A 413 first reads and discards what the client is still sending (up to DRAIN_LIMIT_BYTES), so the
client sees the answer instead of a connection reset, and closes the connection.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings

from notifications import metrics
from notifications.api.errors import envelope
from notifications.validation import is_decimal

API_PREFIX = "/api/"
SUBMIT_PATH = "/api/v1/messages"
DRAIN_LIMIT_BYTES = 16 * 1024 * 1024
_CHUNK = 64 * 1024

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class RequestBodyLimit:
    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if not environ.get("PATH_INFO", "").startswith(API_PREFIX):
            return self.app(environ, start_response)
        limit = settings.MAX_MESSAGE_BYTES
        declared = environ.get("CONTENT_LENGTH") or ""
        body = environ["wsgi.input"]
        if is_decimal(declared):
            if int(declared) > limit:
                _drain(body, int(declared))
                return self._too_large(environ, start_response, limit)
            return self.app(environ, start_response)
        if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            received = _read_up_to(body, limit + 1)
            if len(received) > limit:
                _drain(body, DRAIN_LIMIT_BYTES)
                return self._too_large(environ, start_response, limit)
            environ["wsgi.input"] = io.BytesIO(received)
            environ["CONTENT_LENGTH"] = str(len(received))
        return self.app(environ, start_response)

    def _too_large(
        self, environ: dict[str, Any], start_response: Callable[..., Any], limit: int
    ) -> list[bytes]:
        if environ.get("REQUEST_METHOD") == "POST" and environ.get("PATH_INFO") == SUBMIT_PATH:
            metrics.record_submission("rejected", "PAYLOAD_TOO_LARGE")
        message = f"The request body is larger than {limit} bytes."
        payload = json.dumps(envelope("PAYLOAD_TOO_LARGE", message), separators=(",", ":")).encode()
        start_response(
            "413 Request Entity Too Large",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(payload))),
                ("Connection", "close"),
            ],
        )
        return [payload]


def _read_up_to(stream: Any, size: int) -> bytes:
    parts: list[bytes] = []
    remaining = size
    while remaining > 0:
        part = stream.read(min(_CHUNK, remaining))
        if not part:
            break
        parts.append(part)
        remaining -= len(part)
    return b"".join(parts)


def _drain(stream: Any, size: int) -> None:
    """Read and forget up to `size` bytes (never more than DRAIN_LIMIT_BYTES)."""
    remaining = min(size, DRAIN_LIMIT_BYTES)
    while remaining > 0:
        part = stream.read(min(_CHUNK, remaining))
        if not part:
            return
        remaining -= len(part)
