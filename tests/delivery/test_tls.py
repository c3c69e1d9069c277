"""https targets: the connection goes to the checked address, while SNI and certificate
verification use the target's name."""

from __future__ import annotations

import datetime
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from notifications.delivery.addresses import AddressPolicy
from notifications.delivery.http import DeliveryClient
from notifications.domain import DeliveryRequest


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_vendor(tmp_path):
    cert, key = self_signed(tmp_path, "vendor.test")
    seen: dict[str, str] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen["host"] = self.headers["Host"]
            seen["sni"] = getattr(self.connection, "herald_sni", "")
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    def remember_sni(sock: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> None:
        sock.herald_sni = name or ""

    context.sni_callback = remember_sni
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], cert, seen
    server.shutdown()
    server.server_close()


def client(cert: Path) -> DeliveryClient:
    return DeliveryClient(
        connect_timeout=2,
        total_timeout=5,
        pool_size=1,
        ca_certs=str(cert),
        address_policy=AddressPolicy.from_cidrs(["127.0.0.0/8"]),
        resolver=lambda host, port: ["127.0.0.1"],
    )


def post(delivery_client: DeliveryClient, url: str):
    request = DeliveryRequest(url=url, method="POST", headers={}, body="{}", body_is_json=True)
    return delivery_client.send(request, "msg_tls")


def test_https_uses_the_target_name_for_sni_and_certificate(tls_vendor):
    port, cert, seen = tls_vendor
    result = post(client(cert), f"https://vendor.test:{port}/hook")
    assert result.status_code == 200, result.error
    assert seen == {"host": f"vendor.test:{port}", "sni": "vendor.test"}


def test_certificate_for_another_name_is_refused(tls_vendor, tmp_path):
    port, cert, _ = tls_vendor
    result = post(client(cert), f"https://other.test:{port}/hook")
    assert result.status_code is None
    assert "certificate" in result.error.lower() or "hostname" in result.error.lower()


def test_untrusted_certificate_is_refused(tls_vendor):
    port, _, _ = tls_vendor
    untrusted = DeliveryClient(
        connect_timeout=2,
        total_timeout=5,
        pool_size=1,
        address_policy=AddressPolicy.from_cidrs(["127.0.0.0/8"]),
        resolver=lambda host, port: ["127.0.0.1"],
    )
    result = post(untrusted, f"https://vendor.test:{port}/hook")
    assert result.status_code is None and "certificate" in result.error.lower()
