"""Rules for what a producer may ask Herald to send. Pure functions, no I/O.

Each check raises `RuleViolation` with a stable code; the API turns violations into per-field
VALIDATION_ERROR details.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from notifications.delivery.addresses import AddressPolicy, TargetNotAllowed, parse_literal

ALLOWED_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
MAX_URL_LENGTH = 2048
MAX_HEADERS = 50
MAX_HEADER_VALUE_BYTES = 4096
MAX_IDEMPOTENCY_KEY_LENGTH = 255

# RFC 7230 section 3.2.6: token = 1*tchar
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_IDEMPOTENCY_KEY = re.compile(r"^[\x20-\x7e]+$")

# Headers that describe the connection or the framing, which Herald's HTTP client owns.
FORBIDDEN_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te"}
    | {"trailer"}
)
FORBIDDEN_HEADER_PREFIXES = ("proxy-", "webhook-")  # webhook-* is reserved for Herald's signatures

# Shown masked wherever a request is displayed: they usually carry a vendor credential.
SECRET_HEADER_NAMES = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
SECRET_HEADER_WORDS = ("key", "token", "secret", "signature", "password", "auth")


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
    if literal is None:
        try:
            parts.hostname.encode("idna")
        except UnicodeError:
            raise RuleViolation("The host is not a valid host name.") from None
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
        if not _TOKEN.match(name):
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
        if len(value.encode()) > MAX_HEADER_VALUE_BYTES:
            raise RuleViolation(f"Header {name!r} is longer than {MAX_HEADER_VALUE_BYTES} bytes.")
    return dict(headers)


def check_idempotency_key(key: str) -> str:
    if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY_LENGTH or not _IDEMPOTENCY_KEY.match(key):
        raise RuleViolation(
            f"Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY_LENGTH} printable ASCII characters."
        )
    return key


def is_secret_header(name: str) -> bool:
    lowered = name.lower()
    return lowered in SECRET_HEADER_NAMES or any(word in lowered for word in SECRET_HEADER_WORDS)


def mask_headers(headers: dict[str, str]) -> dict[str, str]:
    """Headers fit to show: secret-looking values replaced by a fixed mask."""
    return {
        name: ("********" if is_secret_header(name) else value) for name, value in headers.items()
    }
