"""Herald runs on what deploy/cloudformation/herald.yaml creates: the template deployed into the
stand-in's CloudFormation, no `bootstrap`, Herald's settings naming the stack's outputs. A message
submitted through the API is delivered by a worker to a real local vendor; and every AWS call the
API, the worker and the operator commands make is one their IAM policy allows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from io import StringIO
from typing import Any

import boto3
import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from notifications import aws, aws_probes
from notifications.domain import Status
from notifications.queue import default_queue
from notifications.worker import Worker
from tests.deploy.support import IGNORE_UNMODELLED_ALARMS, REGION, CallRecorder, allows
from tests.deploy.support import policy_document as deployed_policy
from tests.factories import make_producer, message_payload
from tests.support.waiting import wait_until
from tests.support.worker import running, status_of
from tests.vendor import Answer

pytestmark = pytest.mark.filterwarnings(IGNORE_UNMODELLED_ALARMS)

URL = "/api/v1/messages"


@pytest.fixture
def delivering(settings: Any) -> None:
    """Settings for a worker built as `run_worker` builds it, delivering to the local vendor."""
    settings.DELIVERY_ALLOWED_NETWORKS = ["127.0.0.0/8"]  # the local vendor, past the SSRF guard
    settings.WORKER_POLL_SECONDS = 1  # so that the worker stops within a second
    settings.RETRY_SCHEDULE = "1"
    settings.RETRY_JITTER = 0.0


def producer_client() -> APIClient:
    _, key = make_producer()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return api


def submit(api: APIClient, target_url: str) -> str:
    response = api.post(
        URL,
        data=json.dumps(message_payload(target_url=target_url)),
        content_type="application/json",
    )
    assert response.status_code == 202, response.content
    return response.json()["id"]


def test_a_message_is_delivered_through_the_stacks_resources(
    stack, delivering, vendor, transactional_db
):
    api = producer_client()
    message_id = submit(api, vendor.script("/signup", Answer(200)))

    with running(Worker.from_settings(concurrency=2)):
        wait_until(
            lambda: status_of(message_id) == Status.COMPLETED,
            timeout=30,
            what=lambda: f"{message_id} COMPLETED (it is {status_of(message_id)})",
        )

    shown = api.get(f"{URL}/{message_id}").json()
    assert shown["status"] == "COMPLETED"
    [call] = vendor.requests_to("/signup")
    assert call.headers["Herald-Message-Id"] == message_id
    # Herald used the stack's resources and nothing else: `bootstrap` never ran.
    assert aws.dynamodb().list_tables()["TableNames"] == [stack["TableName"]]
    queues = {url.rsplit("/", 1)[1] for url in aws.sqs().list_queues()["QueueUrls"]}
    assert queues == {stack["QueueName"], stack["DeadLetterQueueName"]}


def test_every_call_each_process_makes_is_allowed_by_its_policy(
    stack, standin, delivering, settings, vendor, transactional_db
):
    """Each process's ways through the code that reach AWS, in one process: the policies
    deployed from the template must allow every (action, resource) it asked for. This proves the
    policies suffice for what is exercised here; that they grant no more than the code uses is
    read from the code (the template names where each call is made)."""
    settings.SQS_VISIBILITY_TIMEOUT = 3  # a heartbeat every second, so a slow call gets one
    api = producer_client()
    console = Client()
    console.force_login(User.objects.create_superuser("root", password="a-long-test-password"))
    recorder = CallRecorder(stack)

    @contextmanager
    def process(name: str) -> Iterator[None]:
        """Calls from now on are `name`'s; queue URLs are looked up again, as a process of its
        own would (they are cached per process)."""
        default_queue()._urls.clear()
        with recorder.acting_as(name):
            yield

    recorder.start()
    try:
        with process("api"):  # intake, as producers use it
            delivered = [
                submit(api, vendor.script("/slow", Answer(200, delay=2.5))),
                submit(api, vendor.script("/flaky", Answer(503), then=Answer(200))),
            ]
            failed = [submit(api, vendor.script("/gone", then=Answer(410))) for _ in range(2)]
            # The batch endpoint, with a request large enough to be kept in an item of its own.
            large = {"target_url": vendor.script("/batch", Answer(200)), "body": {"x": "y" * 2000}}
            batch = api.post(f"{URL}/batch", {"messages": [large]}, format="json")
            assert batch.json()["results"][0]["status"] == 202, batch.content
            delivered.append(batch.json()["results"][0]["message"]["id"])

        def outcomes() -> list[Status]:
            return [status_of(message_id) for message_id in delivered + failed]

        with process("worker"), running(Worker.from_settings(concurrency=4)):
            wait_until(
                lambda: sorted(outcomes()) == sorted([Status.COMPLETED] * 3 + [Status.FAILED] * 2),
                timeout=30,
                what=lambda: f"every delivery finished (now {outcomes()})",
            )
            # What run_worker's /readyz and /metrics ask.
            assert aws_probes.readiness().ok
            aws_probes.queue_depths()

        with process("api"):  # reads, a requeue, the console, probes
            for path in (f"{URL}/{delivered[1]}", f"{URL}/{delivered[1]}/attempts", URL):
                assert api.get(path).status_code == 200
            assert api.get(URL, {"status": "FAILED"}).status_code == 200
            assert api.post(f"{URL}/{failed[0]}/requeue").status_code == 200
            for path in (
                "/admin/herald/dashboard/",
                "/admin/herald/messages/",
                f"/admin/herald/messages/?search={delivered[0]}",
                f"/admin/herald/messages/{delivered[0]}/",
            ):
                assert console.get(path).status_code == 200, path
            assert console.get("/readyz").status_code == 200
            assert console.get("/metrics").status_code == 200
            # Target hosts (issue 13): the pages, a pause and resume, deliver now.
            host_page = "/admin/herald/hosts/127.0.0.1/"
            for path in ("/admin/herald/hosts/", host_page):
                assert console.get(path).status_code == 200, path
            for action, data in (
                ("pause/", {"reason": "policy test"}),
                ("resume/", {"reason": "policy test"}),
                ("deliver-now/", {"reason": "policy test"}),
            ):
                assert console.post(host_page + action, data).status_code == 302, action
            assert console.get("/admin/herald/dashboard/").status_code == 200

        # A dead letter for redrive_dlq, put there by hand (not through Herald's clients).
        sqs = boto3.client("sqs", endpoint_url=standin, region_name=REGION)
        dlq_url = sqs.get_queue_url(QueueName=stack["DeadLetterQueueName"])["QueueUrl"]
        sqs.send_message(QueueUrl=dlq_url, MessageBody=json.dumps({"message_id": delivered[0]}))

        with process("operator"):
            for command in (
                ["reconcile", "--older-than", "0"],
                ["requeue_failed", "--reason", "policy test"],
                ["redrive_dlq"],
                ["recount_statuses"],
                ["host", "pause", "127.0.0.1", "--reason", "policy test"],
                ["host", "show"],
                ["host", "show", "127.0.0.1"],
                ["host", "resume", "127.0.0.1"],
                ["host", "deliver-now", "127.0.0.1", "--reason", "policy test"],
            ):
                call_command(*command, stdout=StringIO())
    finally:
        recorder.stop()

    policies = {
        "api": ("ApiPolicy", stack["ApiPolicyArn"]),
        "worker": ("WorkerPolicy", stack["WorkerPolicyArn"]),
        "operator": ("OperatorPolicy", stack["OperatorPolicyArn"]),
    }
    assert set(recorder.calls) == set(policies)
    refused = []
    for kind, calls in recorder.calls.items():
        name, arn = policies[kind]
        document = deployed_policy(standin, arn)
        refused += [
            f"  {kind}: {action} on {resource} (not allowed by {name})"
            for action, resource in sorted(calls)
            if not allows(document, action, resource)
        ]
    assert not refused, (
        "Herald made AWS calls its IAM policies do not allow. Add each action, on the resource "
        "named, to the policy in deploy/cloudformation/herald.yaml (with a comment saying where "
        "the call is made) and to docs/deploy.md's IAM table:\n" + "\n".join(refused)
    )
