"""DELIVERY_TIMEOUT bounds the whole call: lookup, a drip-fed answer, a slow body."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from notifications.delivery.addresses import AddressPolicy
from notifications.delivery.http import DeliveryClient
from notifications.domain import DeliveryRequest

LOCAL = AddressPolicy.from_cidrs(["127.0.0.0/8"])


class DripServer:
    """A raw TCP vendor that writes `head` at once, then `drip` a byte every `gap` seconds."""

    def __init__(self, head: bytes, drip: bytes, gap: float) -> None:
        self.head, self.drip, self.gap = head, drip, gap
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                conn.sendall(self.head)
                for byte in self.drip:
                    time.sleep(self.gap)
                    conn.sendall(bytes([byte]))
            except OSError:
                pass  # the client hung up

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def drip_servers() -> Iterator[list[DripServer]]:
    servers: list[DripServer] = []
    yield servers
    for server in servers:
        server.close()


def request_to(port: int, path: str = "/") -> DeliveryRequest:
    return DeliveryRequest(
        url=f"http://127.0.0.1:{port}{path}",
        method="POST",
        headers={},
        body="{}",
        body_is_json=True,
    )


def client(timeout: float, **kwargs) -> DeliveryClient:
    return DeliveryClient(
        connect_timeout=1.0, total_timeout=timeout, pool_size=4, address_policy=LOCAL, **kwargs
    )


def test_a_drip_fed_status_line_is_cut_at_the_deadline(drip_servers):
    # Each byte comes well inside the socket read timeout, so only a deadline can stop it.
    server = DripServer(b"", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", gap=0.3)
    drip_servers.append(server)
    started = time.monotonic()
    result = client(1.5).send(request_to(server.port), "msg_drip")
    elapsed = time.monotonic() - started
    assert result.status_code is None
    assert result.error.startswith("DeliveryTimeout")
    assert elapsed < 2.5, elapsed  # without the deadline: about 13 s (44 bytes x 0.3 s)


def test_a_drip_fed_body_keeps_the_status_and_ends_at_the_deadline(drip_servers):
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
    server = DripServer(head, b"x" * 100, gap=0.2)
    drip_servers.append(server)
    started = time.monotonic()
    result = client(1.5).send(request_to(server.port), "msg_body")
    elapsed = time.monotonic() - started
    assert result.status_code == 200  # the vendor answered; only its body was cut
    assert elapsed < 2.5, elapsed  # without the deadline: about 20 s


def test_a_name_lookup_that_hangs_ends_at_the_deadline():
    def stuck_resolver(host: str, port: int) -> list[str]:
        time.sleep(5)
        return ["127.0.0.1"]

    request = DeliveryRequest(
        url="http://vendor.test/hook", method="POST", headers={}, body="{}", body_is_json=True
    )
    started = time.monotonic()
    result = client(1.0, resolver=stuck_resolver).send(request, "msg_dns")
    assert time.monotonic() - started < 2.0
    assert result.status_code is None
    assert result.error.startswith("NameResolutionError") and "longer than" in result.error


def test_calls_for_one_host_share_its_outstanding_lookup():
    lookups = []

    def stuck_resolver(host: str, port: int) -> list[str]:
        lookups.append(host)
        time.sleep(3)
        return ["127.0.0.1"]

    deliveries = client(1.0, resolver=stuck_resolver)
    request = DeliveryRequest(
        url="http://stuck-dns.test/hook", method="POST", headers={}, body="{}", body_is_json=True
    )
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(deliveries.send(request, "msg")))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4
    assert all(r.error and r.error.startswith("NameResolutionError") for r in results)
    assert lookups == ["stuck-dns.test"]  # one thread stuck for this host, not four


def test_a_finished_call_is_never_cut_later_on_a_reused_connection(vendor):
    # The first call finishes in time; its deadline passes while the same pooled connection
    # serves a second, slower call, which must not be cut by the first call's watchdog.
    from tests.vendor import Answer

    vendor.script("/reuse", Answer(200), Answer(200, delay=1.2))
    deliveries = client(1.0 + 0.9)
    request = request_to(vendor.server.server_address[1], "/reuse")
    first = deliveries.send(request, "msg_first")
    time.sleep(0.9)
    second = deliveries.send(request, "msg_second")  # runs past the first call's deadline
    assert (first.status_code, second.status_code) == (200, 200), second.error
