"""The AWS stand-in's fault mode (scripts/aws_standin.py): off unless asked for; throttling and
500s that Herald's clients see as AWS's own; outages that refuse connections, then end."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from notifications import aws as herald_aws
from scripts.aws_standin import FaultPlan, StandinThread


@pytest.fixture
def faulty(settings) -> Iterator[StandinThread]:
    standin = StandinThread(faults=FaultPlan(seed=1)).start()
    settings.AWS_ENDPOINT_URL = standin.endpoint
    settings.AWS_MAX_ATTEMPTS = 1  # no retry back-off to wait for
    yield standin
    standin.stop()


def test_fault_mode_is_off_unless_asked_for(aws):
    # Without --faults there is no control endpoint (moto answers the path as its own), and
    # nothing is injected.
    requests.post(f"{aws}/_standin/faults", json={"sqs_throttle": 1}, timeout=5)
    assert aws_call_works()


def aws_call_works() -> bool:
    return all(herald_aws.call("sqs", "list_queues") is not None for _ in range(20))


def test_throttling_and_500s_reach_herald_as_aws_errors(faulty):
    control = f"{faulty.endpoint}/_standin/faults"
    assert "TableNames" in herald_aws.call("dynamodb", "list_tables")
    requests.post(control, json={"dynamodb_throttle": 1}, timeout=5).raise_for_status()
    with pytest.raises(herald_aws.AWSUnavailable) as throttled:
        herald_aws.call("dynamodb", "list_tables")
    assert throttled.value.code == "ProvisionedThroughputExceededException"
    requests.post(
        control, json={"dynamodb_throttle": 0, "sqs_error": 1}, timeout=5
    ).raise_for_status()
    herald_aws.call("dynamodb", "list_tables")
    with pytest.raises(herald_aws.AWSUnavailable) as failed:
        herald_aws.call("sqs", "list_queues")
    assert failed.value.code == "InternalError"
    counts = requests.get(control, timeout=5).json()["counts"]
    assert counts == {"dynamodb_throttle": 1, "sqs_error": 1}


def test_an_outage_refuses_connections_then_ends(faulty):
    requests.post(f"{faulty.endpoint}/_standin/outage", json={"seconds": 1}, timeout=5)
    time.sleep(0.3)
    with pytest.raises(herald_aws.AWSUnavailable, match="EndpointConnectionError"):
        herald_aws.call("dynamodb", "list_tables")
    time.sleep(1)
    assert "TableNames" in herald_aws.call("dynamodb", "list_tables")
    assert requests.get(f"{faulty.endpoint}/_standin/faults", timeout=5).json()["counts"] == {
        "outage": 1,
        "outage_ms": 1000,
    }


def test_make_run_never_turns_the_fault_mode_on():
    devstack = (Path(__file__).resolve().parents[1] / "scripts" / "devstack.py").read_text()
    assert "--faults" not in devstack
