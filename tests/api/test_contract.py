"""The API against its OpenAPI contract, fuzzed in-process with schemathesis.

The schema is the one the app serves (GET /api/schema/), the app is the WSGI application gunicorn
runs (with the body limit in front of Django), the message store is moto, and the requests carry a
real producer's key. Every operation gets schema-derived examples, boundary and negative cases
(the coverage phase, which also sends each path the methods it does not serve) and random
ones; every built-in check runs on every answer: no 5xx, status code, headers, content type and
body as documented, valid input accepted, invalid input refused, 405 with Allow for undeclared
methods, and authentication enforced.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from jsonschema import Draft202012Validator
from schemathesis.checks import (
    negative_data_rejection,
    not_a_server_error,
    positive_data_acceptance,
)
from schemathesis.config import SchemathesisConfig

from config.wsgi import application
from tests.conftest import reset_aws
from tests.factories import make_producer, message_payload
from tests.support.worker import finished, run_until
from tests.vendor import Answer

# Random cases per operation (the fuzzing phase); the examples and coverage phases add their own.
FUZZ_EXAMPLES = 40
# Chains of calls along the links (submit, then get, attempts, requeue; list, then next page).
STATEFUL_EXAMPLES = 15


@pytest.fixture
def producer_key(transactional_db, aws):
    """A real producer's API key. transactional_db: the requests go through the WSGI handler,
    which closes database connections after each request as in production, so they cannot share
    a test's open transaction."""
    return make_producer("contract")[1]


CONFIG = SchemathesisConfig.from_dict(
    {
        "operations": [
            {
                # An Idempotency-Key the fuzzer already used with another body is a documented
                # 422 for a request the schema alone cannot tell from a new one.
                "include-operation-id": "submitMessage",
                "checks": {
                    "positive_data_acceptance": {"expected-statuses": ["2xx", "401", "422", "429"]}
                },
            }
        ]
    }
)


def checks_to_skip(case):
    """Checks that cannot judge this case, each with the reason."""
    operation = case.operation.definition.raw["operationId"]
    if operation == "listMessages" and (case.query or {}).get("cursor"):
        # A cursor is opaque: only one a page returned is valid, which no schema can say, so a
        # made-up one is a documented 400 VALIDATION_ERROR rather than valid input refused.
        return [positive_data_acceptance]
    if operation == "submitMessage" and only_the_target_url_breaks_the_schema(case.body):
        # The target_url pattern is the form the contract promises; Herald takes more (host
        # names in Unicode, a last label that starts with a digit, any path), and refuses
        # beyond it only what it could never deliver. Such a URL may rightly be accepted.
        return [negative_data_rejection]
    if operation == "submitMessageBatch" and is_a_list_of_items(case.body):
        # Each item is checked on its own and a bad one is answered in its own result (200 for
        # the batch, the item's 4xx inside), as the contract says: a request whose only schema
        # violations are inside its items is rightly not refused whole. The item results are
        # still checked against the schema, and a request that is not a list of 1 to 100 items
        # still must be refused.
        return [negative_data_rejection]
    return []


def is_a_list_of_items(body):
    return (
        isinstance(body, dict)
        and set(body) == {"messages"}
        and isinstance(body["messages"], list)
        and 1 <= len(body["messages"]) <= 100
    )


def only_the_target_url_breaks_the_schema(body):
    document = schema.raw_schema
    submission = Draft202012Validator(
        {**document, "$ref": "#/components/schemas/MessageSubmission"}
    )
    if not isinstance(body, dict) or submission.is_valid(body):
        return False
    return submission.is_valid({**body, "target_url": "https://vendor.example.com/hook"})


# Loaded as the module is collected, so each operation is a test of its own. (The lazy
# `schemathesis.pytest.from_fixture` does not run under pytest 9.2: it sets `Node._nodeid`.)
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application, config=CONFIG)


@schema.parametrize()
@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize=True,
    # One producer and one store for all of an operation's cases, on purpose.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_the_api_keeps_its_contract(case, producer_key):
    case.call_and_validate(
        headers={"Authorization": f"Bearer {producer_key}"}, excluded_checks=checks_to_skip(case)
    )


def test_workflows_that_follow_the_links_keep_the_contract(producer_key, aws):
    """Stateful: chains of calls along the document's links (submit -> get, attempts, requeue;
    list -> next page), so answers about messages that exist are checked too."""
    headers = {"Authorization": f"Bearer {producer_key}"}

    class Workflows(schema.as_state_machine()):
        def setup(self):
            # Each chain starts from an empty store, so that hypothesis, which replays a chain
            # to shrink a failure, sees the same answers again.
            reset_aws(aws)

        def get_call_kwargs(self, case):
            return {"headers": headers}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            case.validate_response(
                response,
                headers=headers,
                excluded_checks=checks_to_skip(case),
                transport_kwargs=kwargs,
            )

    Workflows.run(
        settings=settings(
            max_examples=STATEFUL_EXAMPLES,
            stateful_step_count=6,
            deadline=None,
            derandomize=True,
            suppress_health_check=[HealthCheck.too_slow],
        )
    )


def call_and_validate(key, path, method, excluded_checks=(), **case):
    """One request the fuzzer is unlikely to make, checked like its own."""
    operation = schema[path][method]
    headers = {"Authorization": f"Bearer {key}", **case.pop("headers", {})}
    return operation.Case(headers=headers, **case).call_and_validate(
        headers=headers, excluded_checks=list(excluded_checks)
    )


def test_a_failed_message_its_attempts_and_its_requeue_keep_the_contract(
    producer_key, make_worker, vendor, settings
):
    settings.DELIVERY_ALLOWED_NETWORKS = ["127.0.0.0/8"]  # the local vendor
    target = vendor.script("/refuses", Answer(400, body=b'{"error": "no such campaign"}'))
    submitted = call_and_validate(
        producer_key, "/api/v1/messages", "POST", body=message_payload(target_url=target)
    )
    message_id = submitted.json()["id"]
    run_until(make_worker(), finished(message_id))

    path = {"id": message_id}
    attempts = call_and_validate(
        producer_key, "/api/v1/messages/{id}/attempts", "GET", path_parameters=path
    ).json()["results"]
    assert [(a["outcome"], a["status_code"], a["error"]) for a in attempts] == [
        ("permanent", 400, "http_status")
    ]
    failed = call_and_validate(producer_key, "/api/v1/messages/{id}", "GET", path_parameters=path)
    assert (failed.json()["status"], failed.json()["last_error"]) == ("FAILED", "http_status")
    requeued = call_and_validate(
        producer_key,
        "/api/v1/messages/{id}/requeue",
        "POST",
        path_parameters=path,
        body={"reason": "campaign created"},
    )
    assert requeued.json()["status"] == "QUEUED"


def test_refusals_for_size_rate_and_an_unreachable_store_keep_the_contract(
    producer_key, faults, settings
):
    settings.MAX_MESSAGE_BYTES = 2048
    too_large = call_and_validate(
        producer_key,
        "/api/v1/messages",
        "POST",
        body=message_payload(body={"blob": "x" * 4096}),
    )
    assert too_large.status_code == 413

    settings.INTAKE_RATE, settings.INTAKE_BURST = 1, 1  # one submission a second
    answers = [
        call_and_validate(producer_key, "/api/v1/messages", "POST", body=message_payload())
        for _ in range(5)
    ]
    assert 429 in [answer.status_code for answer in answers]

    settings.INTAKE_RATE = 0
    faults.fail("dynamodb", "PutItem", status=500, code="InternalServerError")
    unavailable = call_and_validate(
        producer_key,
        "/api/v1/messages",
        "POST",
        # The store is made unreachable on purpose: 503 is the documented answer (its status,
        # Retry-After and body are still checked), not a server error.
        excluded_checks=[not_a_server_error],
        body=message_payload(),
    )
    assert unavailable.status_code == 503

    not_acceptable = call_and_validate(
        producer_key, "/api/v1/messages", "GET", headers={"Accept": "text/html"}
    )
    assert not_acceptable.status_code == 406
