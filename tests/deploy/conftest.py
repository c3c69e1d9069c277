"""A clean stand-in with nothing bootstrapped, and Herald pointed at a stack deployed from the
template."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.deploy.support import deploy_stack


@pytest.fixture
def standin(moto_endpoint: str, settings: Any) -> Iterator[str]:
    """The session's stand-in, emptied, with Herald's clients pointed at it (and no `bootstrap`)."""
    from notifications.store import default_store

    settings.AWS_ENDPOINT_URL = moto_endpoint
    settings.AWS_REGION = "us-east-1"
    default_store().flush_statistics()  # an earlier test's pending counts go to its own table
    requests.post(f"{moto_endpoint}/moto-api/reset", timeout=10).raise_for_status()
    yield moto_endpoint
    default_store().flush_statistics()  # to this test's table, while settings still name it


@pytest.fixture
def stack(standin: str, settings: Any) -> dict[str, str]:
    """A stack deployed from the template with names of its own; Herald's settings name its
    outputs, as docs/deploy.md tells an operator to do."""
    from notifications.queue import default_queue

    outputs = deploy_stack(
        standin, "herald-test", TableName="stack-messages", QueueName="stack-deliveries"
    )
    settings.DYNAMODB_TABLE = outputs["TableName"]
    settings.SQS_QUEUE_NAME = outputs["QueueName"]
    settings.SQS_DLQ_NAME = outputs["DeadLetterQueueName"]
    default_queue()._urls.clear()
    return outputs
