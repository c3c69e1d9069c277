"""Shared fixtures.

Tests talk to a real moto server on loopback (started once per session, reset before each test
that uses AWS), through Herald's own AWS clients. Faults are injected with botocore `before-send`
handlers on those clients, which exercise botocore's real retry path.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from botocore.awsrequest import AWSResponse

from scripts.aws_standin import StandinThread

# Never let a test reach real AWS with a developer's credentials.
for _name, _value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}.items():
    os.environ[_name] = _value
os.environ.pop("AWS_PROFILE", None)
logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto server access log


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(autouse=True)
def _static_files_without_manifest(settings: Any) -> None:
    """Production serves hashed static names from collectstatic's manifest; tests render pages
    without running collectstatic (tests/e2e run it where they serve the real thing)."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    server = StandinThread().start()
    yield server.endpoint
    from notifications.store import default_store

    default_store().flush_statistics()  # now, not at exit when the server is gone
    server.stop()


@pytest.fixture
def aws(moto_endpoint: str, settings: Any) -> Iterator[str]:
    """A fresh, bootstrapped table and queue pair on the session's moto server."""
    from notifications.queue import default_queue
    from notifications.store import default_store

    # Clients are cached per process (building one costs ~0.3 s); they all point at this server.
    settings.AWS_ENDPOINT_URL = moto_endpoint
    settings.AWS_REGION = "us-east-1"
    # Count changes an earlier test left pending go to its table now, not to this test's.
    default_store().flush_statistics()
    requests.post(f"{moto_endpoint}/moto-api/reset", timeout=10).raise_for_status()
    default_queue()._urls.clear()
    default_store().ensure_table()
    default_queue().ensure_queues()
    yield moto_endpoint
    # Written now, while the settings still point at the server (at the session's end they no
    # longer do, and a count left pending would go to the default endpoint at exit).
    default_store().flush_statistics()


class FaultInjector:
    """Registers botocore before-send handlers on Herald's clients; counts what they saw."""

    def __init__(self) -> None:
        self.registrations: list[tuple[Any, str, Callable[..., Any]]] = []
        self.calls: dict[str, int] = {}

    def fail(
        self,
        service: str,
        operation: str,
        *,
        status: int = 500,
        code: str = "InternalError",
        connection_error: bool = False,
        times: int | None = None,
    ) -> None:
        from botocore.exceptions import EndpointConnectionError

        from notifications import aws as aws_module

        client = aws_module.client(service)
        event = f"before-send.{client.meta.service_model.service_id.hyphenize()}.{operation}"
        key = f"{service}.{operation}"
        self.calls[key] = 0

        def handler(request: Any, **_: Any) -> Any:
            self.calls[key] += 1
            if times is not None and self.calls[key] > times:
                return None
            if connection_error:
                raise EndpointConnectionError(endpoint_url=request.url)
            body = json.dumps({"__type": f"com.amazonaws#{code}", "message": "injected"}).encode()
            return AWSResponse(
                request.url, status, {"Content-Type": "application/x-amz-json-1.0"}, _RawBody(body)
            )

        client.meta.events.register(event, handler)
        self.registrations.append((client, event, handler))

    def count(self, service: str, operation: str) -> Callable[[], int]:
        """Count real calls of an operation (after-call), without changing them."""
        from notifications import aws as aws_module

        client = aws_module.client(service)
        event = f"after-call.{client.meta.service_model.service_id.hyphenize()}.{operation}"
        key = f"count:{service}.{operation}"
        self.calls[key] = 0

        def handler(**_: Any) -> None:
            self.calls[key] += 1

        client.meta.events.register(event, handler)
        self.registrations.append((client, event, handler))
        return lambda: self.calls[key]

    def clear(self) -> None:
        for client, event, handler in self.registrations:
            client.meta.events.unregister(event, handler)
        self.registrations.clear()


class _RawBody:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


@pytest.fixture
def faults(aws: str) -> Iterator[FaultInjector]:
    injector = FaultInjector()
    yield injector
    injector.clear()


@pytest.fixture
def vendor() -> Iterator[Any]:
    from tests.vendor import Vendor

    server = Vendor().start()
    yield server
    server.stop()


from tests.support.worker import make_worker  # noqa: E402, F401 - a fixture for every test package
