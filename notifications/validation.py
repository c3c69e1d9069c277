"""Rules for what a producer may ask Herald to send, and how a request is shown. Pure functions,
no I/O.

What is accepted is exactly what the worker can put on the wire: header names are whole RFC 9110
tokens, header values are what HTTP/1.1 carries (Latin-1 text without control characters), host
names have an ASCII (IDNA) form, and JSON is valid Unicode and not absurdly deep. Each
check raises `RuleViolation` with a stable code; the API turns violations into per-field
VALIDATION_ERROR details.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import unquote_plus, urlsplit

from notifications.delivery.addresses import (
    AddressPolicy,
    TargetNotAllowed,
    host_ascii,
    parse_literal,
)

ALLOWED_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
MAX_URL_LENGTH = 2048
MAX_HEADERS = 50
MAX_HEADER_VALUE_BYTES = 4096
MAX_IDEMPOTENCY_KEY_LENGTH = 255
MAX_JSON_DEPTH = 64
# Metadata is kept in the status item and shown in listings: labels, not a second body.
MAX_METADATA_BYTES = 2048

# Patterns are used with fullmatch: `$` would also match before a final newline.
# RFC 9110 section 5.6.2: token = 1*tchar
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 9110 section 5.5: field-value characters are visible ASCII, space, tab and obs-text (bytes
# 0x80-0xFF); Python's HTTP client sends a value as Latin-1, so that is also all it can carry.
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
_IDEMPOTENCY_KEY = re.compile(r"[\x20-\x7e]+")
# A label of a host name in its ASCII form: letters, digits, hyphens (and underscores, which some
# real hosts have). Anything else could never be looked up: refused at once, not at delivery.
_HOST_LABEL = re.compile(r"[A-Za-z0-9_-]{1,63}")

# Headers that describe the connection or the framing, which Herald's HTTP client owns.
FORBIDDEN_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te"}
    | {"trailer", "herald-message-id"}  # Herald sets Herald-Message-Id on every attempt
)
FORBIDDEN_HEADER_PREFIXES = ("proxy-", "webhook-")  # webhook-* is reserved for Herald's signatures

# Shown masked wherever a request is displayed: header values, and query parameters of the target
# URL, whose names say they usually carry a vendor credential. A name is secret when it is listed,
# contains one of the words, or has one of the parts (between `-`, `_` or `.`: `sig` as in
# `?sig=...`, but not `signup`).
SECRET_NAMES = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
SECRET_WORDS = (
    "key",
    "token",
    "secret",
    "signature",
    "password",
    "passwd",
    "auth",
    "credential",
    "session",
    "jwt",
)
SECRET_NAME_PARTS = frozenset({"sig", "pwd", "pass", "otp", "sid"})
MASK = "********"


class RuleViolation(ValueError):
    def __init__(self, message: str, code: str = "invalid") -> None:
        super().__init__(message)
        self.code = code


def check_target_url(url: str, address_policy: AddressPolicy | None = None) -> str:
    """An absolute http(s) URL with a host and no userinfo, and, when the host is an IP literal,
    an address the policy allows. Returns it unchanged. (Host names are checked at delivery,
    when they are resolved.)"""
    if not isinstance(url, str) or not url:
        raise RuleViolation("Must be an absolute http or https URL.")
    if len(url) > MAX_URL_LENGTH:
        raise RuleViolation(f"Must be at most {MAX_URL_LENGTH} characters.")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise RuleViolation("Must not contain whitespace or control characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise RuleViolation(f"Not a valid URL: {error}.") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise RuleViolation("Only http and https URLs are allowed.", "target_not_allowed")
    if "@" in parts.netloc:
        raise RuleViolation("URLs with user information are not allowed.", "target_not_allowed")
    if not parts.hostname:
        raise RuleViolation("The URL must name a host.")
    if port == 0:
        raise RuleViolation("Port 0 is not a valid port.")
    literal = parse_literal(parts.hostname)
    try:
        ascii_host = host_ascii(parts.hostname)  # what the worker looks up and sends as Host
    except UnicodeError:
        raise RuleViolation("The host is not a valid host name.") from None
    if literal is None and not all(
        _HOST_LABEL.fullmatch(label) for label in ascii_host.removesuffix(".").split(".")
    ):
        raise RuleViolation("The host is not a valid host name.")
    if literal is not None:
        try:
            (address_policy or AddressPolicy()).check(literal)
        except TargetNotAllowed as refused:
            raise RuleViolation(f"Target not allowed: {refused}.", "target_not_allowed") from None
    return url


def check_headers(headers: object) -> dict[str, str]:
    """A flat map of token names to single-line string values, none owned by Herald."""
    if not isinstance(headers, dict):
        raise RuleViolation("Must be an object mapping header names to string values.")
    if len(headers) > MAX_HEADERS:
        raise RuleViolation(f"At most {MAX_HEADERS} headers are allowed.")
    seen: set[str] = set()
    for name, value in headers.items():
        if not _TOKEN.fullmatch(name):
            raise RuleViolation(f"Header name {name!r} is not a valid HTTP token.")
        lowered = name.lower()
        if lowered in seen:
            raise RuleViolation(f"Header {name!r} is given more than once.")
        seen.add(lowered)
        if lowered in FORBIDDEN_HEADERS or lowered.startswith(FORBIDDEN_HEADER_PREFIXES):
            raise RuleViolation(f"Header {name!r} is set by Herald and may not be given.")
        if not isinstance(value, str):
            raise RuleViolation(f"Header {name!r} must have a string value.")
        if any(ch in value for ch in "\r\n\x00"):
            raise RuleViolation(f"Header {name!r} must not contain CR, LF or NUL.")
        if not _FIELD_VALUE.fullmatch(value):
            raise RuleViolation(
                f"Header {name!r} may contain only visible ASCII, spaces, tabs and Latin-1 "
                "characters (what HTTP/1.1 carries); encode other text first.",
                "not_sendable",
            )
        if len(value) > MAX_HEADER_VALUE_BYTES:  # Latin-1: one byte per character
            raise RuleViolation(f"Header {name!r} is longer than {MAX_HEADER_VALUE_BYTES} bytes.")
    return dict(headers)


def check_json(value: Any) -> Any:
    """A parsed JSON value Herald can store and send back out: nested at most MAX_JSON_DEPTH
    levels, and text that is valid Unicode (JSON's escapes can spell a lone surrogate, which
    UTF-8 cannot carry). Checked without recursion, so no depth can exhaust the stack."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise RuleViolation(f"Nested more than {MAX_JSON_DEPTH} levels deep.", "too_deep")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
        elif isinstance(item, str) and not _is_unicode(item):
            raise RuleViolation("Contains text that is not valid Unicode.", "invalid_text")
    return value


def check_metadata(value: Any) -> dict[str, Any]:
    """A JSON object (see `check_json`) of at most MAX_METADATA_BYTES as compact UTF-8 JSON."""
    if not isinstance(value, dict):
        raise RuleViolation("Must be a JSON object.")
    check_json(value)
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_METADATA_BYTES:
        raise RuleViolation(
            f"Must be at most {MAX_METADATA_BYTES} bytes as JSON (is {size}).", "too_large"
        )
    return value


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


def is_decimal(text: str) -> bool:
    """Whether `text` is a non-negative integer in ASCII digits (`str.isdigit()` alone takes
    "²", which int() refuses): for numbers that arrive as text (limits, lengths, delays)."""
    return text.isascii() and text.isdigit()


def check_idempotency_key(key: str) -> str:
    if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY_LENGTH or not _IDEMPOTENCY_KEY.fullmatch(key):
        raise RuleViolation(
            f"Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY_LENGTH} printable ASCII characters."
        )
    return key


def is_secret_name(name: str) -> bool:
    """Whether a header or query parameter name looks like it carries a credential."""
    lowered = name.lower()
    return (
        lowered in SECRET_NAMES
        or any(word in lowered for word in SECRET_WORDS)
        or not SECRET_NAME_PARTS.isdisjoint(re.split(r"[-_.\s]+", lowered))
    )


def mask_headers(headers: dict[str, str]) -> dict[str, str]:
    """Headers fit to show: secret-looking values replaced by a fixed mask."""
    return {name: (MASK if is_secret_name(name) else value) for name, value in headers.items()}


def mask_url(url: str) -> str:
    """A target URL fit to show: the values of secret-looking query (and fragment) parameters
    replaced by a fixed mask; everything else exactly as given."""
    base, hash_mark, fragment = url.partition("#")
    path, question_mark, query = base.partition("?")
    return path + question_mark + _mask_parameters(query) + hash_mark + _mask_parameters(fragment)


def _mask_parameters(text: str) -> str:
    masked = []
    for parameter in text.split("&"):
        name, equals, value = parameter.partition("=")
        if equals and value and is_secret_name(unquote_plus(name)):
            value = MASK
        masked.append(name + equals + value)
    return "&".join(masked)
