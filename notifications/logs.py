"""Log output: text or one JSON object per line, never a secret in either.

Herald logs message ids, statuses and error classes, never request headers or bodies. These
formatters are the safety net for what slips through anyway (an exception whose text quotes a
header, a URL with a token in its query string): both mask credentials in the rendered message, the
exception text and every structured field before a line is written.

Structured fields go through `extra=log_fields(...)`: the JSON format writes them as keys, the text
format keeps its one readable line (the message already names the message id).
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _BaseJsonFormatter

from notifications.validation import MASK, SECRET_WORDS, is_secret_name

# A value runs until whitespace, a quote, a backslash or a separator, so masking never breaks
# the structure around it (a dict repr, a query string, a JSON string).
_VALUE = r"[^\s\"'\\&;)}\]]+"
_SCHEMES = re.compile(rf"\b(Bearer|Basic|Token|Digest)\s+{_VALUE}", re.IGNORECASE)
_CREDENTIALS = (
    # Herald's own: API keys and Standard Webhooks signing secrets.
    (re.compile(r"\bhrld_[0-9a-f]{12}_[A-Za-z0-9_-]+"), f"hrld_{MASK}"),
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=]+"), f"whsec_{MASK}"),
)
# name=value, name: value, 'name': 'value' where the name looks secret (api_key=…, "X-Auth-Token":
# "…"): it holds one of the words validation masks in headers, or "cookie".
_SECRET_WORDS = "|".join(map(re.escape, (*SECRET_WORDS, "cookie")))
_NAMED = re.compile(
    rf"(?P<name>[\w.-]*(?:{_SECRET_WORDS})[\w.-]*)"
    rf"(?P<between>[\"']?\s*[=:]\s*[\"']?){_VALUE}",
    re.IGNORECASE,
)
# ...but not an exception's name before its text ("KeyError: 'pk'", "AuthenticationFailed: …").
_NOT_A_NAME = re.compile(r"(Error|Exception|Failed|Warning)$")

# Structured fields Herald knows; `log_fields` takes only these, so a caller cannot pass a
# request's headers or body by accident.
FIELDS = (
    "message_id",
    "producer_id",
    "status",
    "outcome",
    "attempt",
    "target_host",
    "duration_ms",
)


def redact(text: str) -> str:
    """`text` with credential-looking values replaced by a fixed mask."""
    text = _SCHEMES.sub(rf"\1 {MASK}", text)
    for pattern, replacement in _CREDENTIALS:
        text = pattern.sub(replacement, text)
    return _NAMED.sub(_mask_named, text)


def _mask_named(match: re.Match[str]) -> str:
    if _NOT_A_NAME.search(match["name"]):
        return match[0]
    return f"{match['name']}{match['between']}{MASK}"


def log_fields(**fields: Any) -> dict[str, Any]:
    """Structured fields for `extra=`: `logger.info("...", extra=log_fields(message_id=m.id))`."""
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise TypeError(f"unknown log fields: {', '.join(sorted(unknown))}")
    return {name: value for name, value in fields.items() if value is not None}


def _redact_value(name: str, value: Any) -> Any:
    """A field's value fit to write: masked whole under a secret-looking name, otherwise with
    credentials masked inside; objects (a request, say) as their masked text."""
    if is_secret_name(name) and value not in (None, ""):
        return MASK
    if value is None or isinstance(value, bool | int | float | datetime):
        return value
    if isinstance(value, dict):
        return {key: _redact_value(str(key), inner) for key, inner in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(name, inner) for inner in value]
    return redact(str(value))


class TextFormatter(logging.Formatter):
    """The default: one readable line (plus a traceback, if any), secrets masked."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(_BaseJsonFormatter):
    """`LOG_FORMAT=json`: timestamp, level, logger, message, Herald's structured fields and the
    exception text, if any, as one JSON object per line; secrets masked."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("fmt", "%(levelname)s %(name)s %(message)s")
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        kwargs.setdefault("timestamp", True)
        super().__init__(*args, **kwargs)

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        return {name: _redact_value(name, value) for name, value in log_data.items()}
