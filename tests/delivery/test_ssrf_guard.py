"""The SSRF guard at delivery: every resolved address is checked, the checked address is the one
dialled, and a socket-level check (an audit hook) shows that nothing forbidden was dialled."""

from __future__ import annotations

import sys
import threading

import pytest

from notifications.delivery.addresses import AddressPolicy, parse_literal
from notifications.delivery.http import DeliveryClient
from notifications.domain import DeliveryRequest, Status
from notifications.store import default_store
from tests.support.submission import submit
from tests.support.worker import run_until, status_of
from tests.vendor import Answer

FORBIDDEN_HOSTS = [
    "127.1",
    "2130706433",
    "0x7f000001",
    "0177.0.0.1",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "169.254.169.254",
    "[fd00:ec2::254]",
    "100.64.0.1",
    "[64:ff9b::a9fe:a9fe]",
    "10.1.2.3",
    "192.168.0.1",
    "172.16.5.4",
    "0.0.0.0",
    "198.18.0.1",
    "192.0.2.1",
    "224.0.0.1",
    "255.255.255.255",
    "[fe80::1]",
    "[ff02::1]",
    "[::]",
    "[2001:db8::1]",
    "[::ffff:10.0.0.1]",
    "[::127.0.0.1]",  # IPv4-compatible
    "[::10.0.0.1]",
    "[::ffff:0:127.0.0.1]",  # IPv4-translated
    "[::ffff:0:a9fe:a9fe]",
    "[64:ff9b:1:7f00:0:100::]",  # local-use NAT64, /48 format: 127.0.0.1
    "[64:ff9b:1::a00:1]",  # the same prefix, not in its /48 format
]


class Dialled:
    """Records every socket.connect made by this process (a CPython audit event), while on."""

    addresses: list[tuple] = []
    recording = threading.Event()

    @classmethod
    def hook(cls, event: str, args: tuple) -> None:
        if event == "socket.connect" and cls.recording.is_set():
            cls.addresses.append(args[1])


sys.addaudithook(Dialled.hook)


@pytest.fixture
def dialled():
    Dialled.addresses = []
    Dialled.recording.set()
    yield Dialled.addresses
    Dialled.recording.clear()


def request(url: str) -> DeliveryRequest:
    return DeliveryRequest(url=url, method="POST", headers={}, body="{}", body_is_json=True)


@pytest.mark.parametrize("host", FORBIDDEN_HOSTS)
def test_forbidden_literals_are_never_dialled_at_delivery(host, dialled):
    client = DeliveryClient(connect_timeout=1, total_timeout=2, pool_size=1)
    result = client.send(request(f"http://{host}:8080/x"), "msg_1")
    assert result.blocked and result.status_code is None
    assert result.error.startswith("TargetNotAllowed: ")
    assert dialled == []


@pytest.mark.parametrize(
    "answers",
    [["10.0.0.7"], ["169.254.169.254"], ["93.184.216.34", "192.168.1.1"], ["::1"], ["100.64.0.1"]],
)
def test_a_name_resolving_to_a_forbidden_address_is_refused(answers, dialled):
    asked = []

    def resolver(host, port):
        asked.append((host, port))
        return answers

    client = DeliveryClient(connect_timeout=1, total_timeout=2, pool_size=1, resolver=resolver)
    result = client.send(request("https://internal.vendor.test/hook"), "msg_1")
    assert asked == [("internal.vendor.test", 443)]
    assert result.blocked
    assert dialled == []


def test_connects_to_the_checked_address_with_the_original_host_header(vendor, dialled):
    port = vendor.server.server_address[1]
    calls = []

    def rebinding_resolver(host, port_):
        calls.append(host)  # a rebinding resolver would answer differently the second time
        return ["127.0.0.1"] if len(calls) == 1 else ["10.0.0.1"]

    client = DeliveryClient(
        connect_timeout=1,
        total_timeout=2,
        pool_size=1,
        resolver=rebinding_resolver,
        address_policy=AddressPolicy.from_cidrs(["127.0.0.0/8"]),
    )
    vendor.script("/named?a=1", Answer(204))
    result = client.send(request(f"http://vendor.test:{port}/named?a=1"), "msg_1")

    assert result.status_code == 204
    assert calls == ["vendor.test"]  # resolved once; the connection used that very answer
    assert dialled == [("127.0.0.1", port)]
    [call] = vendor.requests_to("/named?a=1")
    assert call.headers["Host"] == f"vendor.test:{port}"


def test_blocked_delivery_fails_permanently_with_a_clear_error(make_worker, dialled):
    message_id = submit("http://metadata.internal.test/latest/meta-data")
    worker = make_worker()
    worker.client.resolver = lambda host, port: ["169.254.169.254"]

    run_until(worker, lambda: status_of(message_id) in (Status.FAILED, Status.COMPLETED))

    message = default_store().get(message_id)
    assert message.status == Status.FAILED
    assert message.last_error.startswith("TargetNotAllowed: 169.254.169.254")
    assert message.attempt_count == 1
    assert not any(address[0] == "169.254.169.254" for address in dialled)


def test_parse_literal_knows_names_from_addresses():
    assert parse_literal("vendor.example.com") is None
    assert str(parse_literal("0x7f.1")) == "127.0.0.1"
    assert str(parse_literal("[fe80::1%eth0]")) == "fe80::1"


def test_an_unencodable_host_name_is_a_permanent_failure_without_a_call(dialled):
    client = DeliveryClient(connect_timeout=1, total_timeout=2, pool_size=1)
    result = client.send(request("https://a..b.example.com/hook"), "msg_1")
    assert result.blocked and result.error.startswith("InvalidHost: ")
    assert dialled == []
