"""The one path to AWS: client construction and the call wrapper that every DynamoDB and SQS
request goes through.

Clients are created once per process (creation is not thread-safe, use is) from settings: region,
optional endpoint (the embedded stand-in), retry mode and timeouts. Credentials come from boto3's
standard chain; nothing here knows whether it talks to AWS or to the stand-in.

`call` is where AWS faults become Herald's outcomes: `ConditionFailed` (a conditional write
whose condition did not hold, carrying the item as it was), `AWSRefused` (the request itself is
invalid, so repeating it cannot help) and `AWSUnavailable` (anything else that went wrong after
botocore's own retries). The store and the queue never see botocore's exceptions.
"""

from __future__ import annotations

import threading
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from notifications import metrics

SQS_LONG_POLL_MAX_SECONDS = 20
SERVICE_NAMES = {"dynamodb": "DynamoDB", "sqs": "SQS"}
_lock = threading.Lock()
_clients: dict[tuple[Any, ...], Any] = {}


class AWSUnavailable(Exception):
    """DynamoDB or SQS could not be reached or refused the call after retries. `code` is AWS's
    error code when it answered (None for a network or client-side fault)."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class AWSRefused(AWSUnavailable):
    """AWS refused the request as invalid (`ValidationException`: a key or an item over its size
    limit, a value it cannot take): the same request will be refused again, so it is not worth a
    retry. A subclass of AWSUnavailable, so code that only needs "the call failed" handles both;
    code that answers callers tells them apart."""


REFUSED_CODES = frozenset({"ValidationException"})


class ConditionFailed(Exception):
    """A conditional write's condition did not hold. `item` is the item as it was, in DynamoDB's
    attribute-value form, when the request asked for it (ReturnValuesOnConditionCheckFailure)."""

    def __init__(self, operation: str, item: dict[str, Any] | None) -> None:
        super().__init__(f"DynamoDB {operation}: condition not met")
        self.item = item


def client(service: str, *, probe: bool = False) -> Any:
    """The process's client for `service` with the current settings. Working clients retry
    (`AWS_MAX_ATTEMPTS`) and wait `AWS_READ_TIMEOUT` (an SQS long poll longer); *probe* clients,
    for /readyz and /metrics, try once and wait at most `READINESS_TIMEOUT`, so that a probe
    answers within a load balancer's patience even when AWS does not."""
    key = (service, probe, settings.AWS_ENDPOINT_URL, settings.AWS_REGION)
    cached = _clients.get(key)
    if cached is not None:
        return cached
    with _lock:
        if key not in _clients:
            if probe:
                attempts = 1
                connect_timeout = read_timeout = settings.READINESS_TIMEOUT
            else:
                attempts = settings.AWS_MAX_ATTEMPTS
                connect_timeout, read_timeout = (
                    settings.AWS_CONNECT_TIMEOUT,
                    settings.AWS_READ_TIMEOUT,
                )
                if service == "sqs":
                    # A long poll holds the response for up to 20 s; a shorter read timeout would
                    # cut idle polls short and have botocore retry them.
                    read_timeout = max(read_timeout, SQS_LONG_POLL_MAX_SECONDS + 5)
            config = Config(
                region_name=settings.AWS_REGION,
                retries={"mode": "standard", "total_max_attempts": attempts},
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                max_pool_connections=4 if probe else 64,
                # botocore checks every request against the service model before sending it, a
                # tenth of a worker's CPU; AWS checks them anyway (ValidationException, which
                # `call` turns into AWSRefused), and Herald builds its requests in one place.
                parameter_validation=False,
            )
            session = boto3.session.Session()
            _clients[key] = metrics.instrument_aws_client(
                session.client(service, endpoint_url=settings.AWS_ENDPOINT_URL, config=config)
            )
        return _clients[key]


def dynamodb() -> Any:
    return client("dynamodb")


def sqs() -> Any:
    return client("sqs")


def reset_clients() -> None:
    """Forget cached clients (after settings change, e.g. in tests)."""
    with _lock:
        _clients.clear()


def call(service: str, operation: str, *, probe: bool = False, **kwargs: Any) -> dict[str, Any]:
    """Call `operation` (boto3's method name, e.g. `put_item`) on `service` ("dynamodb" or "sqs").

    Raises ConditionFailed when a conditional write's condition did not hold, AWSRefused when AWS
    refused the request as invalid, AWSUnavailable for every other fault (the message names the
    service, the operation and AWS's error code, never the request)."""
    name = SERVICE_NAMES.get(service, service)
    try:
        return getattr(client(service, probe=probe), operation)(**kwargs)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "Unknown")
        if code == "ConditionalCheckFailedException":
            raise ConditionFailed(operation, error.response.get("Item")) from error
        if code in REFUSED_CODES:
            raise AWSRefused(f"{name} {operation} refused: {code}", code=code) from error
        raise AWSUnavailable(f"{name} {operation} failed: {code}", code=code) from error
    except BotoCoreError as error:
        raise AWSUnavailable(f"{name} {operation} failed: {type(error).__name__}") from error
