"""Herald's metrics: the recording functions, fixed label sets, AWS call counting on a real client
against the moto server, the queue depth collector and the exposition."""

from __future__ import annotations

import boto3
import pytest
from botocore.config import Config
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from notifications import metrics
from tests.conftest import free_port


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_submissions_by_outcome_and_rejections_by_code():
    accepted = value("herald_submissions_total", outcome="accepted", code="")
    rejected = value("herald_submissions_total", outcome="rejected", code="VALIDATION_ERROR")
    other = value("herald_submissions_total", outcome="rejected", code="OTHER")
    metrics.record_submission("accepted")
    metrics.record_submission("rejected", "VALIDATION_ERROR")
    metrics.record_submission("rejected", "SOMETHING_NEW")  # never a free-form label value
    assert value("herald_submissions_total", outcome="accepted", code="") == accepted + 1
    assert (
        value("herald_submissions_total", outcome="rejected", code="VALIDATION_ERROR")
        == rejected + 1
    )
    assert value("herald_submissions_total", outcome="rejected", code="OTHER") == other + 1
    with pytest.raises(ValueError):
        metrics.record_submission("maybe")


def test_deliveries_attempts_and_lag():
    completed = value("herald_deliveries_total", outcome="completed")
    metrics.record_delivery("completed")
    assert value("herald_deliveries_total", outcome="completed") == completed + 1
    with pytest.raises(ValueError):
        metrics.record_delivery("queued")

    count = value("herald_delivery_attempt_duration_seconds_count", outcome="delivered")
    metrics.observe_attempt(0.3, "delivered")
    assert value("herald_delivery_attempt_duration_seconds_count", outcome="delivered") == count + 1
    with pytest.raises(ValueError):
        metrics.observe_attempt(0.3, "ok")

    within = value("herald_delivery_lag_seconds_bucket", le="1.0")
    metrics.observe_lag(0.7)
    assert value("herald_delivery_lag_seconds_bucket", le="1.0") == within + 1


def test_every_outcome_series_exists_before_its_first_event():
    for outcome in metrics.DELIVERY_OUTCOMES:
        assert (
            REGISTRY.get_sample_value("herald_deliveries_total", {"outcome": outcome}) is not None
        )


def test_worker_load_is_read_at_scrape_time():
    load = {"in_flight": 3, "waiting": 7}
    metrics.track_worker_load(in_flight=lambda: load["in_flight"], waiting=lambda: load["waiting"])
    assert value("herald_deliveries_in_flight") == 3
    load["waiting"] = 9
    assert value("herald_deliveries_waiting") == 9


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("ProvisionedThroughputExceededException", 400, "throttled"),
        ("ThrottlingException", 400, "throttled"),
        ("InternalServerError", 500, "server"),
        ("ValidationException", 400, "client"),
        ("ConditionalCheckFailedException", 400, None),
    ],
)
def test_aws_error_kinds(code, status, kind):
    assert metrics.aws_error_kind(code=code, http_status=status) == kind


def test_an_instrumented_client_counts_calls_and_faults(aws):
    client = metrics.instrument_aws_client(
        boto3.session.Session().client("dynamodb", endpoint_url=aws, region_name="us-east-1")
    )
    calls = value("herald_aws_calls_total", service="dynamodb", operation="DescribeTable")
    client_errors = value(
        "herald_aws_errors_total", service="dynamodb", operation="DescribeTable", error="client"
    )
    client.list_tables()
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.describe_table(TableName="no-such-table")
    assert value("herald_aws_calls_total", service="dynamodb", operation="DescribeTable") == (
        calls + 1
    )
    assert (
        value(
            "herald_aws_errors_total", service="dynamodb", operation="DescribeTable", error="client"
        )
        == client_errors + 1
    )


def test_an_unreachable_endpoint_counts_as_a_connection_error():
    client = metrics.instrument_aws_client(
        boto3.session.Session().client(
            "sqs",
            endpoint_url=f"http://127.0.0.1:{free_port()}",
            region_name="us-east-1",
            config=Config(retries={"total_max_attempts": 1}, connect_timeout=1),
        )
    )
    before = value(
        "herald_aws_errors_total", service="sqs", operation="ListQueues", error="connection"
    )
    with pytest.raises(Exception, match="Could not connect"):
        client.list_queues()
    assert (
        value("herald_aws_errors_total", service="sqs", operation="ListQueues", error="connection")
        == before + 1
    )


def test_queue_depths_are_read_when_scraped_and_skipped_when_unreadable():
    depths = {("work", "visible"): 4, ("dead_letter", "visible"): 1, ("work", "bogus"): 9}
    text = metrics.render_metrics(metrics.QueueDepthCollector(lambda: depths)).decode()
    samples = {
        (sample.labels["queue"], sample.labels["state"]): sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "herald_queue_messages"
        for sample in family.samples
    }
    assert samples == {("work", "visible"): 4, ("dead_letter", "visible"): 1}

    def unreadable() -> dict:
        raise ConnectionError("SQS is down")

    text = metrics.render_metrics(metrics.QueueDepthCollector(unreadable)).decode()
    assert "herald_queue_messages" not in text
    assert "herald_submissions_total" in text


def test_names_follow_prometheus_conventions():
    text = metrics.render_metrics().decode()
    names = {family.name for family in text_string_to_metric_families(text)}
    herald = {name for name in names if name.startswith("herald_")}
    assert herald >= {
        "herald_submissions",
        "herald_deliveries",
        "herald_delivery_attempt_duration_seconds",
        "herald_delivery_lag_seconds",
        "herald_deliveries_in_flight",
        "herald_deliveries_waiting",
        "herald_aws_calls",
        "herald_aws_errors",
    }
    assert "herald_submissions_total" in text and "herald_aws_calls_total" in text
