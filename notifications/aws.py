"""The one place that builds AWS clients.

Clients are created once per process (creation is not thread-safe, use is) from settings: region,
optional endpoint (the embedded stand-in), retry mode and timeouts. Credentials come from boto3's
standard chain; nothing here knows whether it talks to AWS or to the stand-in.
"""

from __future__ import annotations

import threading
from typing import Any

import boto3
from botocore.config import Config
from django.conf import settings

SQS_LONG_POLL_MAX_SECONDS = 20
_lock = threading.Lock()
_clients: dict[str, Any] = {}


def client(service: str) -> Any:
    cached = _clients.get(service)
    if cached is not None:
        return cached
    with _lock:
        if service not in _clients:
            read_timeout = settings.AWS_READ_TIMEOUT
            if service == "sqs":
                # A long poll holds the response for up to 20 s; a shorter read timeout would cut
                # idle polls short and have botocore retry them.
                read_timeout = max(read_timeout, SQS_LONG_POLL_MAX_SECONDS + 5)
            config = Config(
                region_name=settings.AWS_REGION,
                retries={"mode": "standard", "total_max_attempts": settings.AWS_MAX_ATTEMPTS},
                connect_timeout=settings.AWS_CONNECT_TIMEOUT,
                read_timeout=read_timeout,
                max_pool_connections=64,
            )
            session = boto3.session.Session()
            _clients[service] = session.client(
                service, endpoint_url=settings.AWS_ENDPOINT_URL, config=config
            )
        return _clients[service]


def dynamodb() -> Any:
    return client("dynamodb")


def sqs() -> Any:
    return client("sqs")


def reset_clients() -> None:
    """Forget cached clients (after settings change, e.g. in tests)."""
    with _lock:
        _clients.clear()


class AWSUnavailable(Exception):
    """DynamoDB or SQS could not be reached or refused the call after retries."""
