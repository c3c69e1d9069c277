"""Health reports: checks run side by side under one deadline, failures named by class and code."""

from __future__ import annotations

import threading

from botocore.exceptions import ClientError, EndpointConnectionError

from notifications.health import HealthReport, alive, run_checks


def test_every_check_passing_is_ready():
    report = run_checks({"dynamodb": lambda: None, "sqs": lambda: None}, timeout=1)
    assert report.ok and report.http_status == 200
    body = report.as_dict()
    assert body["status"] == "ok"
    assert {name: check["status"] for name, check in body["checks"].items()} == {
        "dynamodb": "ok",
        "sqs": "ok",
    }


def test_a_failing_check_is_named_with_its_error_class_and_code_only():
    def missing_table() -> None:
        raise ClientError(
            {"Error": {"Code": "ResourceNotFoundException", "Message": "arn:aws:... not found"}},
            "DescribeTable",
        )

    def unreachable() -> None:
        raise EndpointConnectionError(endpoint_url="http://10.0.0.1:4566/")

    report = run_checks({"dynamodb": missing_table, "sqs": unreachable}, timeout=1)
    assert not report.ok and report.http_status == 503
    body = report.as_dict()
    assert body["status"] == "failing"
    assert body["checks"]["dynamodb"]["error"] == "ClientError: ResourceNotFoundException"
    assert body["checks"]["sqs"]["error"] == "EndpointConnectionError"
    assert "arn:" not in str(body) and "10.0.0.1" not in str(body)


def test_a_check_past_the_deadline_fails_without_holding_up_the_answer():
    release = threading.Event()
    report = run_checks({"slow": release.wait, "quick": lambda: None}, timeout=0.2)
    release.set()
    results = {check.name: check for check in report.checks}
    assert results["slow"].error == "Timeout" and not results["slow"].ok
    assert results["quick"].ok
    assert results["slow"].seconds < 1


def test_checks_run_at_the_same_time():
    both_started = threading.Barrier(2, timeout=1)
    report = run_checks({"a": both_started.wait, "b": both_started.wait}, timeout=2)
    assert report.ok


def test_liveness_body():
    assert alive() == {"status": "ok"}
    assert HealthReport(()).ok
