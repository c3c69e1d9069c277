"""Which network addresses Herald may call (the SSRF guard). Pure functions, no I/O.

Herald calls URLs that other systems give it, from inside the company network. Without this
guard, anyone who can submit a message could reach internal services or the cloud metadata
endpoint. Only globally routable addresses are allowed unless a network is explicitly exempted
(`DELIVERY_ALLOWED_NETWORKS`). Python's `is_private` alone is not enough (100.64.0.1, CGNAT, is
neither private nor global), so the check is "is_global and not in any listed range", and IPv6
forms that embed an IPv4 address (IPv4-mapped, IPv4-compatible, IPv4-translated, NAT64, 6to4) are
judged by that address too.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

FORBIDDEN_NETWORKS: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "this network"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "carrier-grade NAT"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local (cloud metadata)"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "6to4 relay anycast"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
    ("255.255.255.255/32", "broadcast"),
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("100::/64", "discard"),
    ("2001:db8::/32", "documentation"),
    ("3fff::/20", "documentation"),
    ("fc00::/7", "unique-local"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local"),
    ("ff00::/8", "multicast"),
)
_FORBIDDEN = tuple((ipaddress.ip_network(cidr), label) for cidr, label in FORBIDDEN_NETWORKS)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: the address in the last 32 bits
_LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215: the /48 format of RFC 6052
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")
_IPV4_TRANSLATED = 0xFFFF0000  # ::ffff:0:a.b.c.d (RFC 2765), by its first 96 bits


class TargetNotAllowed(Exception):
    """The target's address is not one Herald may call."""


def parse_literal(host: str) -> IPAddress | None:
    """The address a host string denotes when it is an IP literal in any spelling the system
    resolver accepts (127.1, 2130706433, 0x7f000001, 0177.0.0.1, [::1], fe80::1%eth0), else None."""
    host = host.strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if host and all(ch in "0123456789abcdefxABCDEFX." for ch in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))  # accepts the legacy spellings
        except OSError:
            return None
    return None


def host_ascii(host: str) -> str:
    """A host name as DNS and the Host header carry it: internationalised names in their ASCII
    (IDNA) form, `bücher.example` -> `xn--bcher-kva.example`. IP literals and ASCII names come back
    as they are. Raises UnicodeError for a name IDNA cannot encode (an empty or over-long label)."""
    if parse_literal(host) is not None:
        return host
    return host.encode("idna").decode("ascii")


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address inside an IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d),
    IPv4-translated (::ffff:0:a.b.c.d), NAT64 or 6to4 IPv6 address.

    The local-use NAT64 prefix 64:ff9b:1::/48 uses RFC 6052's /48 format: the IPv4 address is in
    bits 48-63 and 72-87, around the "u" octet (bits 64-71), which must be zero, as must the
    suffix (bits 88-127). An address in that prefix that breaks the format is read as 0.0.0.0, so
    it is refused: other readings of it could reach a private address through a translator."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    value = int(address)
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if value >> 32 in (0, _IPV4_TRANSLATED):  # :: and ::1 fall here too: 0.0.0.0 and 0.0.0.1
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)
    if address in _NAT64:
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)
    if address in _LOCAL_NAT64:
        u_octet_and_suffix = value & ((0xFF << 56) | (1 << 40) - 1)
        if u_octet_and_suffix:
            return ipaddress.IPv4Address(0)
        return ipaddress.IPv4Address((value >> 64 & 0xFFFF) << 16 | value >> 40 & 0xFFFF)
    if address in _SIX_TO_FOUR:
        return address.sixtofour
    return None


@dataclass(frozen=True)
class AddressPolicy:
    allowed: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_cidrs(cls, cidrs: Iterable[str]) -> AddressPolicy:
        """A policy allowing the listed networks. Raises ValueError naming an entry that is not
        a network."""
        networks = []
        for cidr in (c.strip() for c in cidrs):
            if not cidr:
                continue
            try:
                networks.append(ipaddress.ip_network(cidr, strict=False))
            except ValueError as error:
                raise ValueError(f"{cidr!r} is not a network: {error}") from None
        return cls(tuple(networks))

    def _allowed(self, address: IPAddress) -> bool:
        return any(address.version == n.version and address in n for n in self.allowed)

    def check(self, address: IPAddress) -> None:
        """Raise TargetNotAllowed unless `address` may be called."""
        inner = embedded_ipv4(address)
        if self._allowed(address) or (inner is not None and self._allowed(inner)):
            return
        for candidate in (address, inner):
            if candidate is None:
                continue
            for network, label in _FORBIDDEN:
                if candidate.version == network.version and candidate in network:
                    raise TargetNotAllowed(f"{address} is a {label} address")
        judged = inner or address
        if not judged.is_global:
            raise TargetNotAllowed(f"{address} is not a globally routable address")
