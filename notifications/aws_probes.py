"""Quick questions to AWS for /readyz and /metrics: does the table answer, does the work queue
answer, how many messages wait in each queue.

These calls use their own clients: one attempt, connect and read timeouts of READINESS_TIMEOUT, so
that a probe answers within a load balancer's patience even when AWS does not (Herald's working
clients in `notifications.aws` retry and wait far longer, which is right for deliveries and wrong
for a probe).
"""

from __future__ import annotations

import threading
from typing import Any

import boto3
from botocore.config import Config
from django.conf import settings

from notifications import health, metrics

_lock = threading.Lock()
_clients: dict[tuple[Any, ...], Any] = {}
_queue_urls: dict[tuple[Any, ...], str] = {}

_DEPTH_ATTRIBUTES = {
    "ApproximateNumberOfMessages": "visible",
    "ApproximateNumberOfMessagesNotVisible": "in_flight",
    "ApproximateNumberOfMessagesDelayed": "delayed",
}


def _client(service: str) -> Any:
    key = (service, settings.AWS_ENDPOINT_URL, settings.AWS_REGION, settings.READINESS_TIMEOUT)
    with _lock:
        if key not in _clients:
            config = Config(
                region_name=settings.AWS_REGION,
                retries={"mode": "standard", "total_max_attempts": 1},
                connect_timeout=settings.READINESS_TIMEOUT,
                read_timeout=settings.READINESS_TIMEOUT,
                max_pool_connections=4,
            )
            client = boto3.session.Session().client(
                service, endpoint_url=settings.AWS_ENDPOINT_URL, config=config
            )
            _clients[key] = metrics.instrument_aws_client(client)
        return _clients[key]


def _queue_url(name: str) -> str:
    key = (settings.AWS_ENDPOINT_URL, settings.AWS_REGION, name)
    url = _queue_urls.get(key)
    if url is None:
        url = _client("sqs").get_queue_url(QueueName=name)["QueueUrl"]
        with _lock:
            _queue_urls[key] = url
    return url


def check_dynamodb_table() -> None:
    """DescribeTable on the message table; raises if it does not answer."""
    _client("dynamodb").describe_table(TableName=settings.DYNAMODB_TABLE)


def check_work_queue() -> None:
    """GetQueueAttributes on the work queue; raises if it does not answer."""
    _client("sqs").get_queue_attributes(
        QueueUrl=_queue_url(settings.SQS_QUEUE_NAME), AttributeNames=["QueueArn"]
    )


def readiness() -> health.HealthReport:
    """Both dependencies, checked side by side within READINESS_TIMEOUT."""
    return health.run_checks(
        {"dynamodb": check_dynamodb_table, "sqs": check_work_queue},
        timeout=settings.READINESS_TIMEOUT,
    )


def queue_depths() -> dict[tuple[str, str], int]:
    """Approximate counts by (queue, state) for the work queue and the dead-letter queue."""
    depths: dict[tuple[str, str], int] = {}
    for queue, name in (("work", settings.SQS_QUEUE_NAME), ("dead_letter", settings.SQS_DLQ_NAME)):
        attributes = _client("sqs").get_queue_attributes(
            QueueUrl=_queue_url(name), AttributeNames=list(_DEPTH_ATTRIBUTES)
        )["Attributes"]
        for attribute, state in _DEPTH_ATTRIBUTES.items():
            depths[(queue, state)] = int(attributes.get(attribute, 0))
    return depths
