"""IPv6 forms that embed an IPv4 address are judged by that address (the SSRF guard's defence in
depth), and the local-use NAT64 prefix is read in its RFC 6052 /48 format."""

import ipaddress

import pytest

from notifications.delivery.addresses import AddressPolicy, TargetNotAllowed, embedded_ipv4


@pytest.mark.parametrize(
    "address,inner",
    [
        ("::ffff:10.0.0.1", "10.0.0.1"),  # IPv4-mapped
        ("::10.0.0.1", "10.0.0.1"),  # IPv4-compatible
        ("::ffff:0:10.0.0.1", "10.0.0.1"),  # IPv4-translated
        ("64:ff9b::a9fe:a9fe", "169.254.169.254"),  # well-known NAT64
        ("64:ff9b:1:a9fe:a9:fe00::", "169.254.169.254"),  # local-use NAT64, /48 format
        ("64:ff9b:1:5db8:d8:2200::", "93.184.216.34"),
        ("2002:a00:1::", "10.0.0.1"),  # 6to4
        ("2606:4700::1111", None),
    ],
)
def test_embedded_ipv4(address, inner):
    found = embedded_ipv4(ipaddress.ip_address(address))
    assert (str(found) if found else None) == inner


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b:1:5db8:1d8:2200::",  # the "u" octet (bits 64-71) is not zero
        "64:ff9b:1:5db8:d8:2200:0:1",  # the suffix is not zero
        "64:ff9b:1::a00:1",  # a /96 reading would be 10.0.0.1
    ],
)
def test_a_local_nat64_address_outside_the_48_format_is_refused(address):
    with pytest.raises(TargetNotAllowed):
        AddressPolicy().check(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address", ["64:ff9b:1:5db8:d8:2200::", "::ffff:0:93.184.216.34", "64:ff9b::5db8:d822"]
)
def test_a_public_ipv4_address_behind_a_translator_is_allowed(address):
    AddressPolicy().check(ipaddress.ip_address(address))


def test_an_allowed_network_exempts_the_embedded_address():
    policy = AddressPolicy.from_cidrs(["10.0.0.0/8"])
    policy.check(ipaddress.ip_address("::ffff:0:10.1.2.3"))
    policy.check(ipaddress.ip_address("64:ff9b:1:a01:2:300::"))
