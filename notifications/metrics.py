"""Herald's Prometheus metrics: every metric in one place, and the small functions that record them.

Names follow Prometheus conventions (`herald_` prefix, `_total` counters, base units), and every label
value comes from a fixed set defined here, never a message id, a URL or a host name. The README lists
each metric with an example alert; deploy/prometheus/alerts.yaml and deploy/grafana/herald.json use
them.

The web server runs several gunicorn worker processes, so it uses the client's multiprocess mode:
`config/gunicorn.py` sets PROMETHEUS_MULTIPROC_DIR before any worker starts, every process writes its
values there, and `render_metrics` adds them up. A process without that variable (the delivery
worker, tests) keeps its values in memory.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

logger = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST
# No `_created` series beside each counter and histogram: they double the series for no alert's
# use, and the multiprocess mode of the web process has none anyway.
disable_created_metrics()
MULTIPROCESS_DIRECTORY_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

SUBMISSION_OUTCOMES = ("accepted", "replayed", "rejected")
# The API's error codes (notifications/api/errors.py); anything else counts as OTHER.
ERROR_CODES = (
    "VALIDATION_ERROR",
    "AUTHENTICATION_FAILED",
    "PERMISSION_DENIED",
    "NOT_FOUND",
    "METHOD_NOT_ALLOWED",
    "NOT_ACCEPTABLE",
    "INVALID_STATE",
    "PAYLOAD_TOO_LARGE",
    "UNSUPPORTED_MEDIA_TYPE",
    "IDEMPOTENCY_KEY_REUSED",
    "RATE_LIMITED",
    "SYSTEM_ERROR",
    "INTERNAL_ERROR",
)
DELIVERY_OUTCOMES = ("completed", "retry", "failed", "lease_lost", "deferred", "held")
ATTEMPT_OUTCOMES = ("delivered", "retry", "permanent")  # delivery.policy.Verdict values
AWS_SERVICES = ("dynamodb", "sqs")
AWS_ERROR_KINDS = ("throttled", "client", "server", "timeout", "connection")
# hosts.Transition values
HOST_TRANSITION_KINDS = (
    "opened",
    "half_opened",
    "closed",
    "reopened",
    "closed_by_operator",
    "paused",
    "resumed",
)
QUEUES = ("work", "dead_letter")
QUEUE_STATES = ("visible", "in_flight", "delayed")

_THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
    }
)
# A refused conditional write is how Herald learns it lost a race: a domain outcome, not a fault.
_NOT_FAULTS = frozenset({"ConditionalCheckFailedException", "TransactionCanceledException"})

SUBMISSIONS = Counter(
    "herald_submissions",
    "Submissions to POST /api/v1/messages by outcome; rejections by error code.",
    ["outcome", "code"],
)
DELIVERIES = Counter(
    "herald_deliveries",
    "Queue messages a worker finished handling, by outcome.",
    ["outcome"],
)
ATTEMPT_DURATION = Histogram(
    "herald_delivery_attempt_duration_seconds",
    "Duration of one HTTP call to a target, by verdict.",
    ["outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60),
)
DELIVERY_LAG = Histogram(
    "herald_delivery_lag_seconds",
    "Time from acceptance to COMPLETED.",
    buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600, 72 * 3600),
)
IN_FLIGHT = Gauge(
    "herald_deliveries_in_flight",
    "Deliveries a worker is running now.",
    multiprocess_mode="livesum",
)
WAITING = Gauge(
    "herald_deliveries_waiting",
    "Messages waiting inside a worker for a free slot for their host.",
    multiprocess_mode="livesum",
)
AWS_CALLS = Counter(
    "herald_aws_calls",
    "AWS API calls (after botocore's retries), by service and operation.",
    ["service", "operation"],
)
AWS_ERRORS = Counter(
    "herald_aws_errors",
    "AWS API calls that failed, by service, operation and kind of error.",
    ["service", "operation", "error"],
)
HOST_TRANSITIONS = Counter(
    "herald_host_transitions",
    "Target hosts' circuit and pause transitions, by transition (the process that made it).",
    ["transition"],
)
QUEUE_MESSAGES = "herald_queue_messages"
QUEUE_MESSAGES_HELP = "Approximate messages in the work and dead-letter queues, by state."

# Every outcome's series exists from the start, so that rate() and ratios see the first event.
for _outcome in DELIVERY_OUTCOMES:
    DELIVERIES.labels(_outcome)
for _outcome in SUBMISSION_OUTCOMES[:2]:
    SUBMISSIONS.labels(_outcome, "")
for _transition in HOST_TRANSITION_KINDS:
    HOST_TRANSITIONS.labels(_transition)


def record_submission(outcome: str, code: str | None = None) -> None:
    """A submission answered: "accepted" (202), "replayed" (200) or "rejected" with its code."""
    if outcome not in SUBMISSION_OUTCOMES:
        raise ValueError(f"unknown submission outcome {outcome!r}")
    label = "" if outcome != "rejected" else (code if code in ERROR_CODES else "OTHER")
    SUBMISSIONS.labels(outcome, label).inc()


def record_delivery(outcome: str) -> None:
    """A worker finished a queue message: completed, retry, failed, lease_lost, deferred (it
    waits in line or went back to SQS: its host, the retry share or a producer share was full)
    or held (its producer is deactivated)."""
    if outcome not in DELIVERY_OUTCOMES:
        raise ValueError(f"unknown delivery outcome {outcome!r}")
    DELIVERIES.labels(outcome).inc()


def record_host_transition(transition: str) -> None:
    """A target host's circuit or pause changed (see `hosts.Transition`)."""
    if transition not in HOST_TRANSITION_KINDS:
        raise ValueError(f"unknown host transition {transition!r}")
    HOST_TRANSITIONS.labels(transition).inc()


def observe_attempt(seconds: float, outcome: str) -> None:
    """One HTTP call to a target took `seconds`; `outcome` is the policy's verdict."""
    if outcome not in ATTEMPT_OUTCOMES:
        raise ValueError(f"unknown attempt outcome {outcome!r}")
    ATTEMPT_DURATION.labels(outcome).observe(seconds)


def observe_lag(seconds: float) -> None:
    """A message reached COMPLETED `seconds` after it was accepted."""
    DELIVERY_LAG.observe(max(0.0, seconds))


def track_worker_load(*, in_flight: Callable[[], int], waiting: Callable[[], int]) -> None:
    """Read the worker's in-flight and waiting counts at each scrape (one worker per process)."""
    IN_FLIGHT.set_function(in_flight)
    WAITING.set_function(waiting)


def record_aws_call(service: str, operation: str, error: str | None = None) -> None:
    """One AWS call; `error` is one of AWS_ERROR_KINDS when it failed."""
    service = service if service in AWS_SERVICES else "other"
    AWS_CALLS.labels(service, operation).inc()
    if error is not None:
        kind = error if error in AWS_ERROR_KINDS else "client"
        AWS_ERRORS.labels(service, operation, kind).inc()


def aws_error_kind(*, code: str | None, http_status: int | None) -> str | None:
    """The kind of a failed AWS call from its error code and HTTP status; None if not a fault."""
    if code in _NOT_FAULTS:
        return None
    if code in _THROTTLING_CODES or http_status == 429:
        return "throttled"
    if http_status is not None and http_status >= 500:
        return "server"
    return "client"


def instrument_aws_client(client: Any) -> Any:
    """Count every call of a boto3 client (after botocore's own retries) and its faults; returns
    the client. Connection errors and timeouts arrive as `after-call-error`."""
    service = client.meta.service_model.service_name

    def after_call(http_response: Any, parsed: Mapping[str, Any], model: Any, **_: Any) -> None:
        status = getattr(http_response, "status_code", None)
        error = None
        if status is not None and status >= 300:
            code = parsed.get("Error", {}).get("Code")
            error = aws_error_kind(code=code, http_status=status)
        record_aws_call(service, model.name, error)

    def after_call_error(exception: Exception, event_name: str, **_: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        kind = "timeout" if "Timeout" in type(exception).__name__ else "connection"
        record_aws_call(service, operation, kind)

    client.meta.events.register("after-call", after_call)
    client.meta.events.register("after-call-error", after_call_error)
    return client


class QueueDepthCollector:
    """`herald_queue_messages{queue, state}`, read when scraped. `read_depths` returns counts keyed
    by (queue, state) from QUEUES × QUEUE_STATES; if it fails the scrape goes on without them."""

    def __init__(self, read_depths: Callable[[], Mapping[tuple[str, str], int]]) -> None:
        self.read_depths = read_depths

    def collect(self) -> Iterable[Metric]:
        try:
            depths = self.read_depths()
        except Exception as error:
            logger.warning("queue depths not read for /metrics: %s", type(error).__name__)
            return
        family = GaugeMetricFamily(QUEUE_MESSAGES, QUEUE_MESSAGES_HELP, labels=["queue", "state"])
        for (queue, state), count in sorted(depths.items()):
            if queue in QUEUES and state in QUEUE_STATES:
                family.add_metric([queue, state], count)
        yield family


class _ProcessRegistry:
    """This process's own metrics, as a collector of a scrape's registry."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


def multiprocess_mode() -> bool:
    return bool(os.environ.get(MULTIPROCESS_DIRECTORY_VARIABLE))


def render_metrics(*collectors: Any) -> bytes:
    """The text exposition of this process's metrics (or, in multiprocess mode, of every web
    worker's), plus `collectors` (e.g. a QueueDepthCollector)."""
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess_mode():
        MultiProcessCollector(registry)
    else:
        registry.register(_ProcessRegistry())
    for collector in collectors:
        registry.register(collector)
    return generate_latest(registry)
