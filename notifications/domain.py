"""Herald's domain: message statuses, the transition table, and the Message and Attempt records.

Pure Python, no I/O. This module is the one place that knows which status changes are allowed; the
store applies a change only as a conditional write that names the expected current status, and it asks
`check_transition` first.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit


class Status(enum.StrEnum):
    PENDING = "PENDING"
    QUEUED = "QUEUED"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


# (from, to) -> what the change means. Anything not listed is refused.
TRANSITIONS: dict[tuple[Status, Status], str] = {
    (Status.PENDING, Status.QUEUED): "sent to the work queue",
    (Status.PENDING, Status.PROCESSING): "claimed by a worker before it was marked queued",
    (Status.QUEUED, Status.PROCESSING): "claimed by a worker",
    (Status.QUEUED, Status.QUEUED): "scheduled retry pulled forward by an operator (deliver now)",
    (Status.PROCESSING, Status.PROCESSING): "expired lease re-claimed by a worker",
    (Status.PROCESSING, Status.QUEUED): "retry scheduled, or expired lease returned to the queue",
    (Status.PROCESSING, Status.COMPLETED): "delivered",
    (Status.PROCESSING, Status.FAILED): "permanent failure or retry budget spent",
    (Status.FAILED, Status.QUEUED): "requeued by an operator",
}

TERMINAL_STATUSES = frozenset({Status.COMPLETED, Status.FAILED})


class IllegalTransition(ValueError):
    """A status change that the transition table does not allow (a programming error)."""

    def __init__(self, current: Status, target: Status) -> None:
        super().__init__(f"transition {current} -> {target} is not allowed")
        self.current = current
        self.target = target


def check_transition(current: Status, target: Status) -> None:
    if (current, target) not in TRANSITIONS:
        raise IllegalTransition(current, target)


class TransitionConflict(Exception):
    """A guarded write found the message in another state than expected.

    `current` is the message as it is now (None when it does not exist), taken from the failed
    conditional write itself (ReturnValuesOnConditionCheckFailure=ALL_OLD), so callers can decide
    without another read.
    """

    def __init__(self, message_id: str, expected: Status, current: Message | None) -> None:
        state = current.status if current else "missing"
        super().__init__(f"message {message_id}: expected {expected}, found {state}")
        self.message_id = message_id
        self.expected = expected
        self.current = current


class MessageNotFound(Exception):
    """No such message (or, for a producer, not one of theirs)."""


class InvalidState(Exception):
    """The message is not in a state that allows the requested change."""

    def __init__(self, message: Message) -> None:
        super().__init__(f"message {message.id} is {message.status}")
        self.message = message


class IdempotencyKeyReused(Exception):
    """The idempotency key was used before for a different request."""

    def __init__(self, existing: Message) -> None:
        super().__init__("idempotency key reused with a different request")
        self.existing = existing


class MessageExists(Exception):
    """A new message's id is taken (an idempotency-key replay, or a collision)."""

    def __init__(self, existing: Message) -> None:
        super().__init__(f"message {existing.id} already exists")
        self.existing = existing


class MessageTooLarge(Exception):
    """A new message would not fit in what the message store can hold (`size` and `limit` in
    bytes, as the store counts them); nothing was written."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"the message takes {size} bytes to store; at most {limit} fit")
        self.size = size
        self.limit = limit


class MessageIdCollision(Exception):
    """A new message's id belongs to another message that is not a replay of this request: a
    bug (ids carry 100 random bits), reported as a server error, never as "retry later"."""


class FailureReason(enum.StrEnum):
    """Why an attempt or a message failed, as producers are told: a stable code and nothing more.
    The detail (addresses, resolver messages, exception text) is for operators: it is kept in
    `Message.last_error` and `Attempt.error`, shown in the admin and logged, never in the API."""

    HTTP_STATUS = "http_status"  # the target answered with a status that is not 2xx
    TIMEOUT = "timeout"  # no complete answer within the deadline
    CONNECTION_FAILED = "connection_failed"  # refused, reset or broken connection
    TLS_FAILED = "tls_failed"  # TLS handshake or certificate verification failed
    NAME_NOT_RESOLVED = "name_not_resolved"  # the host name did not resolve (in time)
    TARGET_NOT_ALLOWED = "target_not_allowed"  # refused by the address policy; nothing was dialled
    INVALID_HOST = "invalid_host"  # a host name that cannot be looked up (IDNA)
    REQUEST_NOT_SENDABLE = "request_not_sendable"  # the request cannot be put on the wire
    RETRY_BUDGET_SPENT = "retry_budget_spent"  # given up without a call: no attempts left
    PRODUCER_DEACTIVATED = "producer_deactivated"  # held, not failed: goes once reactivated


def format_timestamp(moment: datetime) -> str:
    """UTC, microsecond precision, fixed width: sorts lexicographically in time order."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(text: str) -> datetime:
    """Reads what `format_timestamp` writes (and nothing else: a ValueError)."""
    if len(text) == 27 and text[4:20:3] == "--T::." and text[-1] == "Z":
        # fromisoformat reads the fixed format several times faster than strptime, which the
        # worker would otherwise spend noticeable CPU on (several timestamps per message).
        return datetime.fromisoformat(text)
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


@dataclass(frozen=True)
class HistoryEntry:
    from_status: Status | None
    to_status: Status
    at: str
    actor: str
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "from": self.from_status.value if self.from_status else None,
            "to": self.to_status.value,
            "at": self.at,
            "actor": self.actor,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HistoryEntry:
        source = data.get("from")
        return cls(
            from_status=Status(source) if source else None,
            to_status=Status(data["to"]),
            at=data["at"],
            actor=data.get("actor", ""),
            reason=data.get("reason", ""),
        )


@dataclass(frozen=True)
class DeliveryRequest:
    """The outbound HTTP call exactly as the producer submitted it."""

    url: str
    method: str
    headers: dict[str, str]
    body: str | None
    body_is_json: bool

    @property
    def host(self) -> str:
        return (urlsplit(self.url).hostname or "").lower()


@dataclass(frozen=True)
class Message:
    id: str
    producer_id: str
    status: Status
    request: DeliveryRequest
    created_at: str
    updated_at: str
    metadata: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None
    fingerprint: str = ""
    attempt_count: int = 0
    budget_attempts: int = 0
    budget_started_at: str = ""
    last_error: str | None = None  # the detail, for operators
    last_error_code: FailureReason | None = None  # what producers are told
    next_attempt_at: str | None = None
    lease_token: str | None = None
    lease_expires_at: str | None = None
    history: tuple[HistoryEntry, ...] = ()
    expires_at: int | None = None  # epoch seconds: a finished message is deleted after retention
    # False for a message read without its request's headers and body (a listing row, a claim
    # of a message whose request is kept in an item of its own): see MessageStore.with_request.
    request_loaded: bool = True
    # When the request and log items may go: the store's bookkeeping, not part of the message.
    aux_expires_at: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Attempt:
    number: int
    started_at: str
    duration_ms: int
    outcome: str
    worker: str
    status_code: int | None = None
    error: str | None = None  # the detail, for operators
    error_code: FailureReason | None = None  # what producers are told
    response_headers: dict[str, str] = field(default_factory=dict)
    response_snippet: str = ""


@dataclass(frozen=True)
class FailureNote:
    """One failure as the operator dashboard shows it: which message, when, where, why."""

    message_id: str
    at: str
    target_host: str
    producer_id: str
    error: str


@dataclass(frozen=True)
class HourlyAttempts:
    """Attempts that started in one UTC hour (`2026-11-25T14`): delivered, and failed (retried or
    given up)."""

    hour: str
    delivered: int
    failed: int


@dataclass(frozen=True)
class DeliveryStatistics:
    """Aggregates the store keeps up to date (see `store`): counts per status, the latest
    failures (newest first), failures per target host over a recent window, and attempts per
    hour over it (oldest first)."""

    counts: dict[Status, int]
    recent_failures: list[FailureNote]
    failures_by_host: dict[str, int]
    attempts_by_hour: list[HourlyAttempts] = field(default_factory=list)
