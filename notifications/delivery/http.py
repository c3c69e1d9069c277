"""The outbound HTTP call: exactly the submitted request, pooled per target, no redirects.

The target's host is resolved here, every resolved address is checked against the address policy
(the SSRF guard), and the connection is made to the checked address itself, with the original
Host header and, for https, the original name for SNI and certificate verification. So a DNS
answer that changes between check and connect (DNS rebinding) cannot slip through, and no socket
is ever opened to a forbidden address.

`DELIVERY_TIMEOUT` is a deadline for the whole call, not a limit per socket read: the name lookup
runs under it, and a watchdog (`delivery.deadline`) cuts the connection of a call that outlives
it, so a vendor that drip-feeds its answer (or reads the request a byte at a time) cannot hold a
worker's slot, or outlive the worker's lease, however slowly it goes.

Returns an `HttpResult` for every call (a transport error is a result too, with `status_code=None`,
and so is a request that cannot be put on the wire at all), so the worker never has to interpret
exceptions. A result without an answer carries a `FailureReason`, the stable code producers see;
its `error` is the detail, for operators.
"""

from __future__ import annotations

import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error

from notifications import __version__
from notifications.delivery.addresses import (
    AddressPolicy,
    TargetNotAllowed,
    host_ascii,
    parse_literal,
)
from notifications.delivery.deadline import (
    Call,
    DeadlineHTTPSPool,
    DeadlinePool,
    Watchdog,
    current_calls,
)
from notifications.domain import DeliveryRequest, FailureReason

Resolver = Callable[[str, int], list[str]]


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for host:port (deduplicated, in its order)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


USER_AGENT = f"Herald/{__version__}"
HERALD_MESSAGE_ID = "Herald-Message-Id"
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
    error: str | None = None  # "ErrorClass: message" when there was no answer (for operators)
    reason: FailureReason | None = None  # why there was no answer (for producers)
    # Permanent, asking again changes nothing: refused by the address policy (nothing was
    # dialled), a host name with no ASCII form, or a request the wire cannot carry.
    blocked: bool = False


def outgoing_headers(request: DeliveryRequest, message_id: str) -> dict[str, str]:
    # Herald-Message-Id is Herald's alone (a message stored before validation refused it may
    # carry the producer's own), so it is sent once.
    headers = {
        name: value
        for name, value in request.headers.items()
        if name.lower() != HERALD_MESSAGE_ID.lower()
    }
    names = {name.lower() for name in headers}
    if "user-agent" not in names:
        headers["User-Agent"] = USER_AGENT
    if request.body_is_json and "content-type" not in names:
        headers["Content-Type"] = "application/json"
    headers[HERALD_MESSAGE_ID] = message_id
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
        self.total_timeout = total_timeout
        self.connect_timeout = connect_timeout
        tls = {"ca_certs": ca_certs} if ca_certs else {}
        self.pool = urllib3.PoolManager(
            num_pools=256, maxsize=pool_size, block=False, cert_reqs="CERT_REQUIRED", **tls
        )
        self.pool.pool_classes_by_scheme = {
            "http": DeadlinePool,
            "https": DeadlineHTTPSPool,
        }
        self.address_policy = address_policy or AddressPolicy()
        self.resolver = resolver
        # getaddrinfo cannot be interrupted: lookups run here, and a call waits for its lookup
        # only until its deadline (a stuck lookup keeps a thread here, not a delivery slot).
        # Calls for the same host share one outstanding lookup, so a vendor whose DNS hangs
        # holds at most one of these threads and the others stay free for everyone else.
        self._lookups = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="dns")
        self._outstanding: dict[tuple[str, int], Future[list[str]]] = {}
        self._outstanding_lock = threading.Lock()
        self._watchdog = Watchdog()

    def _lookup(self, host: str, port: int, within: float) -> list[str]:
        key = (host, port)
        with self._outstanding_lock:
            lookup = self._outstanding.get(key)
            started = lookup is None
            if lookup is None:
                lookup = self._lookups.submit(self.resolver, host, port)
                self._outstanding[key] = lookup
        if started:  # outside the lock: a lookup already done runs the callback right here
            lookup.add_done_callback(lambda done: self._forget(key, done))
        try:
            return lookup.result(timeout=max(0.0, within))
        except FutureTimeout:
            raise TimeoutError(f"looking up {host} took longer than {within:.1f}s") from None

    def _forget(self, key: tuple[str, int], lookup: Future[list[str]]) -> None:
        with self._outstanding_lock:
            if self._outstanding.get(key) is lookup:
                del self._outstanding[key]

    def resolve_checked(self, host: str, port: int, *, within: float) -> str:
        """The address to connect to; raises TargetNotAllowed if any resolved address is
        forbidden (a name that resolves to both a public and a private address is refused).
        A lookup that takes longer than `within` seconds raises TimeoutError."""
        literal = parse_literal(host)
        if literal is not None:
            addresses = [str(literal)]
        else:
            addresses = self._lookup(host, port, within)
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
        """Make the call. Never raises: whatever goes wrong is a result. An exception other than
        a transport error, raised while the request is built or sent (a header the wire cannot
        carry, in a message stored before validation refused such headers), is a permanent
        `RequestNotSendable` failure, so the message is not left PROCESSING to be redelivered
        in a loop."""
        started = time.monotonic()
        try:
            return self._send(request, message_id, extra_headers or {}, started)
        except Exception as error:
            detail = f"RequestNotSendable: {_without_header_value(error)}"[:300]
            return _no_answer(started, detail, FailureReason.REQUEST_NOT_SENDABLE, blocked=True)

    def _send(
        self,
        request: DeliveryRequest,
        message_id: str,
        extra_headers: dict[str, str],
        started: float,
    ) -> HttpResult:
        headers = outgoing_headers(request, message_id)
        headers.update(extra_headers)
        body = request.body.encode() if request.body is not None else None
        parts = urlsplit(request.url)
        scheme = parts.scheme.lower()
        port = parts.port or (443 if scheme == "https" else 80)
        deadline = started + self.total_timeout
        try:
            # The ASCII (IDNA) form is what is looked up, sent as Host and used for TLS.
            host = host_ascii(parts.hostname or "")
            address = self.resolve_checked(host, port, within=self.total_timeout)
        except TargetNotAllowed as refused:
            detail = f"TargetNotAllowed: {refused}"
            return _no_answer(started, detail, FailureReason.TARGET_NOT_ALLOWED, blocked=True)
        except UnicodeError as error:  # a name IDNA cannot encode: it will never resolve
            detail = f"InvalidHost: {error}"
            return _no_answer(started, detail, FailureReason.INVALID_HOST, blocked=True)
        except OSError as error:  # TimeoutError included
            detail = f"NameResolutionError: {error}"
            return _no_answer(started, detail, FailureReason.NAME_NOT_RESOLVED)
        shown_host = f"[{host}]" if ":" in host else host
        headers["Host"] = shown_host if parts.port is None else f"{shown_host}:{port}"
        tls = {"server_hostname": host, "assert_hostname": host} if scheme == "https" else None
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        left = deadline - time.monotonic()
        if left <= 0:  # the lookup took it all
            return self._deadline_result(started)
        call = Call(deadline)
        self._watchdog.watch(call)
        current_calls.current = call
        try:
            pool = self.pool.connection_from_host(address, port, scheme, pool_kwargs=tls)
            response = pool.urlopen(
                request.method,
                path,
                body=body,
                headers=headers,
                timeout=urllib3.Timeout(total=left, connect=min(self.connect_timeout, left)),
                redirect=False,
                retries=False,
                preload_content=False,
                assert_same_host=False,
            )
        except (Urllib3Error, OSError) as error:
            call.finish()
            if call.expired:
                return self._deadline_result(started)
            return _no_answer(started, _describe(error), _transport_reason(error))
        except Exception:
            call.finish()
            raise  # not a transport error: `send` makes it a RequestNotSendable result
        finally:
            current_calls.current = None
        try:
            snippet = response.read(SNIPPET_BYTES)
            remaining = response.read(DRAIN_LIMIT)
            reusable = len(remaining) < DRAIN_LIMIT
        except (Urllib3Error, OSError):
            # A broken body, or one cut at the deadline: the status line is the vendor's answer.
            snippet, reusable = b"", False
        finally:
            call.finish()
            duration = _elapsed_ms(started)
        if reusable and not call.expired:
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

    def _deadline_result(self, started: float) -> HttpResult:
        detail = f"DeliveryTimeout: timed out, no complete answer within {self.total_timeout:g}s"
        return _no_answer(started, detail, FailureReason.TIMEOUT)


def _no_answer(
    started: float, error: str, reason: FailureReason, *, blocked: bool = False
) -> HttpResult:
    """A call that got no HTTP answer: the detail for operators, the code for producers."""
    return HttpResult(None, _elapsed_ms(started), error=error, reason=reason, blocked=blocked)


def _transport_reason(error: Exception) -> FailureReason:
    cause = getattr(error, "reason", None) or error  # MaxRetryError wraps the real one
    if isinstance(cause, urllib3.exceptions.NewConnectionError):  # a ConnectTimeoutError subclass
        return FailureReason.CONNECTION_FAILED
    if isinstance(cause, TimeoutError | urllib3.exceptions.TimeoutError):
        return FailureReason.TIMEOUT
    if isinstance(cause, ssl.SSLError | urllib3.exceptions.SSLError):
        return FailureReason.TLS_FAILED
    return FailureReason.CONNECTION_FAILED


# http.client quotes a refused header's whole value ("Invalid header value b'Bearer ...'").
_QUOTED_HEADER_VALUE = re.compile(r"(header value)\b.*", re.IGNORECASE | re.DOTALL)


def _without_header_value(error: Exception) -> str:
    """An exception for the attempt log, without the header value it may quote (a secret)."""
    text = _QUOTED_HEADER_VALUE.sub(r"\1 (not shown)", str(error))
    return f"{type(error).__name__}: {text}"


def _describe(error: Exception) -> str:
    return f"{_error_name(error)}: {_error_text(error)}"


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
