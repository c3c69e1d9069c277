"""SQS access: the only module that talks to the work queue and its dead-letter queue.

A queue message carries the message id and, as a hint for the worker's admission limits, the target's
host name and whether the message failed before; no payload, nothing secret. The payload stays in
DynamoDB, the source of truth.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from notifications import aws
from notifications.domain import Message

logger = logging.getLogger(__name__)

# SQS refuses DelaySeconds above 15 minutes; longer backoffs are chained by the worker.
MAX_DELAY_SECONDS = 900
# SQS's limits: a visibility timeout of at most 12 hours, at most 10 entries in a batch request.
MAX_VISIBILITY_SECONDS = 12 * 3600
BATCH_SIZE = 10
# How long SQS keeps a queue message. The work queue's outlasts a message's retry budget
# (RETRY_MAX_AGE, 3 days by default), so SQS never drops work Herald would still deliver (and
# `reconcile` re-sends a QUEUED message whose queue message was lost). A dead letter keeps the age
# it had in the work queue, so the dead-letter queue keeps longer: 14 days, SQS's maximum.
# deploy/cloudformation/herald.yaml sets the same values.
WORK_QUEUE_RETENTION_SECONDS = 4 * 24 * 3600
DEAD_LETTER_RETENTION_SECONDS = 14 * 24 * 3600
BODY_VERSION = 1
# The queue attributes that count messages, by the state Herald calls them.
DEPTH_ATTRIBUTES = {
    "ApproximateNumberOfMessages": "visible",
    "ApproximateNumberOfMessagesNotVisible": "in_flight",
    "ApproximateNumberOfMessagesDelayed": "delayed",
}
# SQS's error code for an unknown queue name (the JSON protocol's, and the query protocol's).
QUEUE_DOES_NOT_EXIST = frozenset({"QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue"})


@dataclass(frozen=True)
class QueuedWork:
    """One received SQS message. `message_id` is None when the body could not be decoded.
    `host`, `is_retry` and `producer` are the sender's hints (None/False in bodies written
    without them)."""

    message_id: str | None
    receipt_handle: str
    receive_count: int
    raw_body: str
    host: str | None = None
    is_retry: bool = False
    producer: str | None = None


@dataclass(frozen=True)
class BatchFailure:
    """An entry of a batch request that SQS did not carry out (the others were). `sender_fault`:
    SQS refused the entry itself (a receipt handle that is no longer valid, a bad value), so
    sending it again cannot help; otherwise the fault was SQS's and a retry may succeed."""

    receipt_handle: str
    code: str
    sender_fault: bool


@dataclass(frozen=True)
class QueuedHints:
    """What a queue message's body says."""

    message_id: str | None
    host: str | None
    is_retry: bool
    producer: str | None


def encode_body(
    message_id: str,
    *,
    host: str | None = None,
    is_retry: bool = False,
    producer: str | None = None,
) -> str:
    data: dict[str, Any] = {"v": BODY_VERSION, "message_id": message_id}
    if host:
        data["host"] = host
    if producer:
        data["producer"] = producer
    if is_retry:
        data["retry"] = True
    return json.dumps(data, separators=(",", ":"))


def _decode(body: str) -> QueuedHints:
    try:
        data = json.loads(body)
    except ValueError:
        return QueuedHints(None, None, False, None)
    if not isinstance(data, dict):
        return QueuedHints(None, None, False, None)

    def text(name: str) -> str | None:
        value = data.get(name)
        return value if isinstance(value, str) and value else None

    return QueuedHints(
        text("message_id"), text("host"), data.get("retry") is True, text("producer")
    )


def decode_body(body: str) -> str | None:
    return _decode(body).message_id


class WorkQueue:
    """The delivery queue. Methods raise `aws.AWSUnavailable` on AWS faults."""

    def __init__(self, queue_name: str | None = None, dlq_name: str | None = None) -> None:
        self.queue_name = queue_name or settings.SQS_QUEUE_NAME
        self.dlq_name = dlq_name or settings.SQS_DLQ_NAME
        self._urls: dict[str, str] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _call(operation: str, *, probe: bool = False, **kwargs: Any) -> dict[str, Any]:
        return aws.call("sqs", operation, probe=probe, **kwargs)

    def _url(self, name: str, *, probe: bool = False) -> str:
        url = self._urls.get(name)
        if url is None:
            url = self._call("get_queue_url", probe=probe, QueueName=name)["QueueUrl"]
            with self._lock:
                self._urls[name] = url
        return url

    @property
    def url(self) -> str:
        return self._url(self.queue_name)

    @property
    def dlq_url(self) -> str:
        return self._url(self.dlq_name)

    # -- schema -----------------------------------------------------------------------------

    def ensure_queues(self) -> None:
        """Create the dead-letter queue and the work queue with its redrive policy (idempotent:
        existing queues get their attributes brought in line)."""
        dlq_url = self._ensure(
            self.dlq_name, {"MessageRetentionPeriod": str(DEAD_LETTER_RETENTION_SECONDS)}
        )
        dlq_arn = self._call("get_queue_attributes", QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        redrive = {
            "deadLetterTargetArn": dlq_arn,
            "maxReceiveCount": settings.SQS_MAX_RECEIVE_COUNT,
        }
        self._ensure(
            self.queue_name,
            {
                "VisibilityTimeout": str(settings.SQS_VISIBILITY_TIMEOUT),
                "MessageRetentionPeriod": str(WORK_QUEUE_RETENTION_SECONDS),
                "RedrivePolicy": json.dumps(redrive),
            },
        )

    def _ensure(self, name: str, attributes: dict[str, str]) -> str:
        try:
            url = self._call("get_queue_url", QueueName=name)["QueueUrl"]
        except aws.AWSUnavailable as error:
            if error.code not in QUEUE_DOES_NOT_EXIST:
                raise
            url = self._call("create_queue", QueueName=name, Attributes=attributes)["QueueUrl"]
        else:
            self._call("set_queue_attributes", QueueUrl=url, Attributes=attributes)
        with self._lock:
            self._urls[name] = url
        return url

    # -- work -------------------------------------------------------------------------------

    def send(
        self,
        message_id: str,
        *,
        delay_seconds: int = 0,
        host: str | None = None,
        is_retry: bool = False,
        producer: str | None = None,
    ) -> None:
        delay = max(0, min(int(delay_seconds), MAX_DELAY_SECONDS))
        self._call(
            "send_message",
            QueueUrl=self.url,
            MessageBody=encode_body(message_id, host=host, is_retry=is_retry, producer=producer),
            DelaySeconds=delay,
        )

    def send_for(self, message: Message, *, delay_seconds: int = 0) -> None:
        """Queue work for `message`, with the hints that let a worker claim it without reading
        it first."""
        self.send(
            message.id,
            delay_seconds=delay_seconds,
            host=message.request.host,
            is_retry=message.attempt_count > 0,
            producer=message.producer_id,
        )

    def send_batch(self, messages: list[Message]) -> set[str]:
        """Queue work for each of `messages` (as `send_for`, no delay), ten to a
        SendMessageBatch call; returns the ids that were sent. Entries SQS failed, and chunks
        that met an AWS fault, are left out (not raised): their messages stay PENDING for the
        reconciler."""
        sent: set[str] = set()
        for start in range(0, len(messages), 10):
            chunk = messages[start : start + 10]
            entries = [
                {
                    "Id": str(n),
                    "MessageBody": encode_body(
                        message.id,
                        host=message.request.host,
                        is_retry=message.attempt_count > 0,
                        producer=message.producer_id,
                    ),
                }
                for n, message in enumerate(chunk)
            ]
            try:
                response = self._call("send_message_batch", QueueUrl=self.url, Entries=entries)
            except aws.AWSUnavailable as error:
                logger.warning("%d messages not sent (they stay PENDING): %s", len(chunk), error)
                continue
            sent.update(chunk[int(entry["Id"])].id for entry in response.get("Successful", []))
        return sent

    def depths(self, *, probe: bool = False) -> dict[tuple[str, str], int]:
        """Approximate counts by (queue, state): queue "work" or "dead_letter", state "visible",
        "in_flight" or "delayed". Two calls. With `probe`, through the quick probe clients."""
        depths: dict[tuple[str, str], int] = {}
        for queue, name in (("work", self.queue_name), ("dead_letter", self.dlq_name)):
            attributes = self._call(
                "get_queue_attributes",
                probe=probe,
                QueueUrl=self._url(name, probe=probe),
                AttributeNames=list(DEPTH_ATTRIBUTES),
            )["Attributes"]
            for attribute, state in DEPTH_ATTRIBUTES.items():
                depths[(queue, state)] = int(attributes.get(attribute, 0))
        return depths

    def depth(self) -> dict[str, int]:
        """The dashboard's counts: the work queue by state, and the dead letters waiting."""
        depths = self.depths()
        return {
            "visible": depths[("work", "visible")],
            "in_flight": depths[("work", "in_flight")],
            "delayed": depths[("work", "delayed")],
            "dead_letters": depths[("dead_letter", "visible")],
        }

    def check_reachable(self) -> None:
        """One quick GetQueueAttributes on the work queue (readiness); raises AWSUnavailable."""
        self._call(
            "get_queue_attributes",
            probe=True,
            QueueUrl=self._url(self.queue_name, probe=True),
            AttributeNames=["QueueArn"],
        )

    def receive(
        self, *, max_messages: int, wait_seconds: int, visibility_timeout: int | None = None
    ) -> list[QueuedWork]:
        """Long-poll the work queue for up to `max_messages` (at most 10) messages."""
        extra = {"VisibilityTimeout": visibility_timeout} if visibility_timeout else {}
        response = self._call(
            "receive_message",
            QueueUrl=self.url,
            MaxNumberOfMessages=max(1, min(max_messages, 10)),
            WaitTimeSeconds=max(0, min(wait_seconds, 20)),
            **extra,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        return [_work(raw) for raw in response.get("Messages", [])]

    def change_visibility(self, receipt_handle: str, seconds: int) -> None:
        self._call(
            "change_message_visibility",
            QueueUrl=self.url,
            ReceiptHandle=receipt_handle,
            VisibilityTimeout=_visibility(seconds),
        )

    def delete_batch(self, receipt_handles: Sequence[str]) -> list[BatchFailure]:
        """Delete queue messages, up to 10 per DeleteMessageBatch request. Returns the entries SQS
        did not delete; raises AWSUnavailable when a request failed as a whole (the requests
        before it were carried out)."""
        unique = list(dict.fromkeys(receipt_handles))  # SQS refuses a handle twice in a batch
        return self._batch("delete_message_batch", [{"ReceiptHandle": h} for h in unique])

    def change_visibility_batch(self, pairs: Sequence[tuple[str, int]]) -> list[BatchFailure]:
        """Set the visibility timeout of queue messages, given as (receipt handle, seconds), up to
        10 per ChangeMessageVisibilityBatch request. Returns the entries SQS did not change;
        raises AWSUnavailable when a request failed as a whole (the requests before it were
        carried out)."""
        return self._batch(
            "change_message_visibility_batch",
            [{"ReceiptHandle": h, "VisibilityTimeout": _visibility(s)} for h, s in pairs],
        )

    def extend_visibility(self, receipt_handles: list[str], seconds: int) -> None:
        """Keep in-flight messages invisible while their deliveries run (batches of 10). An entry
        SQS refuses is one whose queue message is gone already: nothing to keep invisible."""
        self.change_visibility_batch([(handle, seconds) for handle in receipt_handles])

    def _batch(self, operation: str, entries: list[dict[str, Any]]) -> list[BatchFailure]:
        failures: list[BatchFailure] = []
        for start in range(0, len(entries), BATCH_SIZE):
            chunk = entries[start : start + BATCH_SIZE]
            response = self._call(
                operation,
                QueueUrl=self.url,
                Entries=[{"Id": str(n), **entry} for n, entry in enumerate(chunk)],
            )
            for failed in response.get("Failed", []):
                failures.append(
                    BatchFailure(
                        receipt_handle=chunk[int(failed["Id"])]["ReceiptHandle"],
                        code=failed.get("Code", "Unknown"),
                        sender_fault=bool(failed.get("SenderFault")),
                    )
                )
        return failures

    def redrive_dead_letters(self, *, limit: int | None = None) -> list[str]:
        """Move messages from the dead-letter queue back to the work queue (send, then delete:
        a crash in between leaves a duplicate, never a loss). Returns the bodies moved."""
        moved: list[str] = []
        while limit is None or len(moved) < limit:
            batch = self._call(
                "receive_message",
                QueueUrl=self.dlq_url,
                MaxNumberOfMessages=10 if limit is None else max(1, min(10, limit - len(moved))),
                WaitTimeSeconds=1,
                VisibilityTimeout=60,
            ).get("Messages", [])
            if not batch:
                break
            for raw in batch:
                self._call("send_message", QueueUrl=self.url, MessageBody=raw["Body"])
                self._call(
                    "delete_message", QueueUrl=self.dlq_url, ReceiptHandle=raw["ReceiptHandle"]
                )
                moved.append(raw["Body"])
        return moved


def _visibility(seconds: float) -> int:
    return max(0, min(int(seconds), MAX_VISIBILITY_SECONDS))


def _work(raw: dict[str, Any]) -> QueuedWork:
    hints = _decode(raw.get("Body", ""))
    return QueuedWork(
        message_id=hints.message_id,
        receipt_handle=raw["ReceiptHandle"],
        receive_count=int(raw.get("Attributes", {}).get("ApproximateReceiveCount", 1)),
        raw_body=raw.get("Body", ""),
        host=hints.host,
        is_retry=hints.is_retry,
        producer=hints.producer,
    )


_queues: dict[tuple[str, str], WorkQueue] = {}


def default_queue() -> WorkQueue:
    """The configured work queue (one per process and queue name, so its URL is looked up once)."""
    key = (settings.SQS_QUEUE_NAME, settings.SQS_DLQ_NAME)
    if key not in _queues:
        _queues[key] = WorkQueue(*key)
    return _queues[key]
