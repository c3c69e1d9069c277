"""Input validation and output shapes for the producer API.

Output shows producers what they submitted and what became of it, and nothing about the inside:
secret-looking header values and URL parameters are masked, failures are stable codes (the
detail is for operators), and actors other than the producer are named only by their kind."""

from __future__ import annotations

import json
from typing import Any

from rest_framework import serializers

from notifications import validation
from notifications.delivery.allowed_networks import allowed_networks_policy
from notifications.domain import Attempt, HistoryEntry, Message
from notifications.services import Submission

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100
MAX_BATCH = 100  # messages in one POST /api/v1/messages/batch
MAX_REQUEUE_REASON = 500


def _rule(check: Any, value: Any) -> Any:
    try:
        return check(value)
    except validation.RuleViolation as violation:
        raise serializers.ValidationError(str(violation), code=violation.code) from None


class StrictObjectSerializer(serializers.Serializer):
    """A request body that is a JSON object of known fields: anything else is a 400, not ignored."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, dict):
            raise serializers.ValidationError(
                {"non_field_errors": ["The request body must be a JSON object."]}
            )
        unknown = sorted(set(data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError(
                {
                    name: [serializers.ErrorDetail("Unknown field.", code="unknown_field")]
                    for name in unknown
                }
            )
        return super().to_internal_value(data)


class MessageSubmitSerializer(StrictObjectSerializer):
    target_url = serializers.CharField(trim_whitespace=False)
    method = serializers.CharField(default="POST")
    headers = serializers.JSONField(default=dict)
    body = serializers.JSONField(required=False, allow_null=True, default=None)
    metadata = serializers.JSONField(default=dict)

    def validate_target_url(self, value: str) -> str:
        policy = allowed_networks_policy()
        return _rule(lambda url: validation.check_target_url(url, policy), value)

    def validate_method(self, value: str) -> str:
        if value not in validation.ALLOWED_METHODS:
            allowed = ", ".join(validation.ALLOWED_METHODS)
            raise serializers.ValidationError(f"Must be one of {allowed}.", code="invalid_choice")
        return value

    def validate_headers(self, value: Any) -> dict[str, str]:
        return _rule(validation.check_headers, value)

    def validate_body(self, value: Any) -> Any:
        return _rule(validation.check_json, value)

    def validate_metadata(self, value: Any) -> dict[str, Any]:
        return _rule(validation.check_metadata, value)

    def to_submission(self, idempotency_key: str | None) -> Submission:
        data = self.validated_data
        body = data.get("body")
        if body is None or isinstance(body, str):
            wire_body, body_is_json = body, False
        else:
            # UTF-8 as it is, not \u-escaped: an escaped emoji takes 12 bytes instead of 4.
            wire_body = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
            body_is_json = True
        return Submission(
            target_url=data["target_url"],
            method=data["method"],
            headers=data["headers"],
            body=wire_body,
            body_is_json=body_is_json,
            metadata=data["metadata"],
            idempotency_key=idempotency_key,
        )


class TextField(serializers.CharField):
    """Text that arrived as a JSON string (DRF's CharField also takes numbers)."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class RequeueSerializer(StrictObjectSerializer):
    reason = TextField(
        required=False, allow_blank=True, max_length=MAX_REQUEUE_REASON, trim_whitespace=False
    )

    def validate_reason(self, value: str) -> str:
        return _rule(validation.check_json, value)


def message_representation(message: Message, *, with_history: bool = False) -> dict[str, Any]:
    """A message as producers see it. The request's headers are shown (masked) where the whole
    message was read (submit, retrieve, requeue); listing rows are read without them."""
    request = message.request
    target: dict[str, Any] = {
        "method": request.method,
        "url": validation.mask_url(request.url),
        "host": request.host,
    }
    if message.request_loaded:
        target["headers"] = validation.mask_headers(request.headers)
    data: dict[str, Any] = {
        "id": message.id,
        "status": message.status.value,
        "target": target,
        "metadata": message.metadata,
        "idempotency_key": message.idempotency_key,
        "created_at": message.created_at,
        "updated_at": message.updated_at,
        "attempt_count": message.attempt_count,
        "last_error": message.last_error_code,
        "next_attempt_at": message.next_attempt_at,
    }
    if with_history:
        data["history"] = [_history_entry(entry) for entry in message.history]
    return data


def _history_entry(entry: HistoryEntry) -> dict[str, Any]:
    """A history entry as producers see it: `producer:<id>` (themselves) as it is, every other
    actor by its kind only (`worker`, not the worker's host and process; `operator`, not who)."""
    data = entry.as_dict()
    kind = entry.actor.split(":", 1)[0]
    if kind != "producer":
        data["actor"] = kind
    return data


def attempt_representation(attempt: Attempt) -> dict[str, Any]:
    return {
        "number": attempt.number,
        "started_at": attempt.started_at,
        "duration_ms": attempt.duration_ms,
        "outcome": attempt.outcome,
        "status_code": attempt.status_code,
        "error": attempt.error_code,
        "response_headers": attempt.response_headers,
        "response_snippet": attempt.response_snippet,
    }
