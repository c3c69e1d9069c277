"""The outbound HTTP call: exactly the submitted request, pooled per target, no redirects.

The target's host is resolved here, every resolved address is checked against the address policy
(the SSRF guard), and the connection is made to the checked address itself, with the original
Host header and, for https, the original name for SNI and certificate verification. So a DNS
answer that changes between check and connect (DNS rebinding) cannot slip through, and no socket
is ever opened to a forbidden address.

Returns an `HttpResult` for every call (a transport error is a result too, with `status_code=None`),
so the worker never has to interpret exceptions.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error

from notifications import __version__
from notifications.delivery.addresses import AddressPolicy, TargetNotAllowed, parse_literal
from notifications.domain import DeliveryRequest

Resolver = Callable[[str, int], list[str]]


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for host:port (deduplicated, in its order)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


USER_AGENT = f"Herald/{__version__}"
SNIPPET_BYTES = 1024
# Response headers worth keeping in the attempt log (the rest may be large or sensitive).
KEPT_RESPONSE_HEADERS = (
    "content-type",
    "content-length",
    "retry-after",
    "location",
    "date",
    "server",
    "x-request-id",
)
# Read at most this much of a response before giving the connection up instead of draining it.
DRAIN_LIMIT = 64 * 1024


@dataclass(frozen=True)
class HttpResult:
    status_code: int | None
    duration_ms: int
    headers: dict[str, str] = field(default_factory=dict)
    snippet: str = ""
    error: str | None = None  # "ErrorClass: message" for transport errors
    blocked: bool = False  # refused by the address policy: permanent, nothing was dialled


def outgoing_headers(request: DeliveryRequest, message_id: str) -> dict[str, str]:
    headers = dict(request.headers)
    names = {name.lower() for name in headers}
    if "user-agent" not in names:
        headers["User-Agent"] = USER_AGENT
    if request.body_is_json and "content-type" not in names:
        headers["Content-Type"] = "application/json"
    headers["Herald-Message-Id"] = message_id
    return headers


class DeliveryClient:
    """Thread-safe; one instance per worker process. urllib3 keeps one connection pool per
    (scheme, address, port, server name), so connections to a target are reused."""

    def __init__(
        self,
        *,
        connect_timeout: float,
        total_timeout: float,
        pool_size: int,
        address_policy: AddressPolicy | None = None,
        resolver: Resolver = system_resolver,
        ca_certs: str | None = None,
    ) -> None:
        self.timeout = urllib3.Timeout(total=total_timeout, connect=connect_timeout)
        tls = {"ca_certs": ca_certs} if ca_certs else {}
        self.pool = urllib3.PoolManager(
            num_pools=256, maxsize=pool_size, block=False, cert_reqs="CERT_REQUIRED", **tls
        )
        self.address_policy = address_policy or AddressPolicy()
        self.resolver = resolver

    def resolve_checked(self, host: str, port: int) -> str:
        """The address to connect to; raises TargetNotAllowed if any resolved address is
        forbidden (a name that resolves to both a public and a private address is refused)."""
        literal = parse_literal(host)
        addresses = [str(literal)] if literal is not None else self.resolver(host, port)
        if not addresses:
            raise OSError(f"{host} did not resolve")
        for address in addresses:
            parsed = parse_literal(address)
            if parsed is None:
                raise TargetNotAllowed(f"{host} resolved to an unusable address {address!r}")
            self.address_policy.check(parsed)
        return addresses[0]

    def send(
        self, request: DeliveryRequest, message_id: str, extra_headers: dict[str, str] | None = None
    ) -> HttpResult:
        headers = outgoing_headers(request, message_id)
        headers.update(extra_headers or {})
        body = request.body.encode() if request.body is not None else None
        parts = urlsplit(request.url)
        scheme = parts.scheme.lower()
        host = parts.hostname or ""
        port = parts.port or (443 if scheme == "https" else 80)
        started = time.monotonic()
        try:
            address = self.resolve_checked(host, port)
        except TargetNotAllowed as refused:
            return HttpResult(
                None, _elapsed_ms(started), error=f"TargetNotAllowed: {refused}", blocked=True
            )
        except UnicodeError as error:  # a name IDNA cannot encode: it will never resolve
            return HttpResult(
                None, _elapsed_ms(started), error=f"InvalidHost: {error}", blocked=True
            )
        except OSError as error:
            return HttpResult(None, _elapsed_ms(started), error=f"NameResolutionError: {error}")
        shown_host = f"[{host}]" if ":" in host else host
        headers["Host"] = shown_host if parts.port is None else f"{shown_host}:{port}"
        tls = {"server_hostname": host, "assert_hostname": host} if scheme == "https" else None
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            pool = self.pool.connection_from_host(address, port, scheme, pool_kwargs=tls)
            response = pool.urlopen(
                request.method,
                path,
                body=body,
                headers=headers,
                timeout=self.timeout,
                redirect=False,
                retries=False,
                preload_content=False,
                assert_same_host=False,
            )
        except Urllib3Error as error:
            return HttpResult(
                status_code=None,
                duration_ms=_elapsed_ms(started),
                error=f"{_error_name(error)}: {_error_text(error)}",
            )
        try:
            snippet = response.read(SNIPPET_BYTES)
            remaining = response.read(DRAIN_LIMIT)
            reusable = len(remaining) < DRAIN_LIMIT
        except Urllib3Error:
            snippet, reusable = b"", False
        finally:
            duration = _elapsed_ms(started)
        if reusable:
            response.release_conn()
        else:
            response.close()  # a large or broken body: do not keep reading, do not reuse
        kept = {
            name.lower(): value
            for name, value in response.headers.items()
            if name.lower() in KEPT_RESPONSE_HEADERS
        }
        return HttpResult(
            status_code=response.status,
            duration_ms=duration,
            headers=kept,
            snippet=snippet.decode("utf-8", errors="replace"),
        )


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _error_name(error: Exception) -> str:
    reason = getattr(error, "reason", None)
    if isinstance(error, urllib3.exceptions.MaxRetryError) and reason is not None:
        return type(reason).__name__
    return type(error).__name__


def _error_text(error: Exception) -> str:
    reason = getattr(error, "reason", None) or error
    text = str(reason)
    # urllib3 prefixes messages with the connection object's repr; keep the readable part.
    return text.split(">: ", 1)[-1][:300]
