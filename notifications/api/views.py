"""The producer API: thin views over services and selectors."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ErrorDetail, MethodNotAllowed, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from notifications import metrics, selectors, services, validation
from notifications.api.errors import RequestValidationError, classify, envelope
from notifications.api.schema import message_operations
from notifications.api.serializers import (
    DEFAULT_PAGE_SIZE,
    MAX_BATCH,
    MAX_PAGE_SIZE,
    MessageSubmitSerializer,
    RequeueSerializer,
    attempt_representation,
    message_representation,
)
from notifications.api.throttling import ProducerIntakeThrottle
from notifications.domain import Status


class ProducerViewSet(viewsets.ViewSet):
    """A producer API resource. What a route cannot serve is refused before authentication: a
    method it does not have is 405 with `Allow` (DRF authenticates first, so a TRACE without a key
    came back 401; OPTIONS and TRACE are not part of the API), and a query parameter its action
    does not take is 400 (also `?format=`, which DRF would read)."""

    http_method_names = ["get", "post", "put", "patch", "delete", "head"]
    query_parameters: dict[str, frozenset[str]] = {}  # by action; none where not listed

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        if request.method not in self.allowed_methods:
            raise MethodNotAllowed(request.method)
        known = self.query_parameters.get(self.action or "", frozenset())
        unknown = sorted(set(request.query_params) - known)
        if unknown:
            detail = ErrorDetail("Unknown query parameter.", code="unknown_parameter")
            raise ValidationError({name: [detail] for name in unknown})
        super().initial(request, *args, **kwargs)


@message_operations
class MessageViewSet(ProducerViewSet):
    lookup_value_regex = r"[^/]+"
    throttle_classes = [ProducerIntakeThrottle]
    query_parameters = {"list": frozenset({"status", "limit", "cursor"})}

    def create(self, request: Request) -> Response:
        idempotency_key = request.headers.get("Idempotency-Key")
        if idempotency_key is not None:
            try:
                validation.check_idempotency_key(idempotency_key)
            except validation.RuleViolation as violation:
                raise RequestValidationError("Idempotency-Key", str(violation)) from None
        serializer = MessageSubmitSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        result = services.message_submit(
            producer_id=request.user.public_id,
            submission=serializer.to_submission(idempotency_key),
        )
        metrics.record_submission("replayed" if result.replayed else "accepted")
        body = message_representation(result.message)
        location = f"/api/v1/messages/{result.message.id}"
        if result.replayed:
            headers = {"Idempotent-Replayed": "true", "Location": location}
            return Response(body, status=status.HTTP_200_OK, headers=headers)
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": location})

    def retrieve(self, request: Request, pk: str) -> Response:
        message, _ = selectors.message_get(message_id=pk, producer_id=request.user.public_id)
        return Response(message_representation(message, with_history=True))

    def list(self, request: Request) -> Response:
        query = request.query_params
        messages, next_cursor = selectors.message_list(
            producer_id=request.user.public_id,
            status=_status(query.get("status")),
            cursor=_cursor(query.get("cursor")),
            limit=_page_size(query.get("limit")),
        )
        return Response(
            {
                "results": [message_representation(message) for message in messages],
                "next_cursor": next_cursor,
            }
        )

    @action(detail=False, methods=["post"], url_path="batch")
    def batch(self, request: Request) -> Response:
        """Up to MAX_BATCH messages in one request, one result per item in order: 202 with the
        message, 200 with the stored one (a replay), or that item's error in the envelope. Items
        are checked one by one (validation, idempotency key, the producer's intake limit); a bad
        item does not refuse the others. The request itself is refused (400) only when it is not
        a list of 1 to MAX_BATCH items."""
        producer = request.user
        items = _batch_items(request.data)
        results: list[dict[str, Any] | None] = [None] * len(items)
        accepted: list[tuple[int, services.Submission]] = []
        for index, item in enumerate(items):
            try:
                accepted.append((index, _submission(item)))
            except Exception as refused:  # noqa: BLE001 - each item's error is its result
                results[index] = _item_error(refused)
                continue
            wait = services.producer_intake_admit(producer=producer)
            if wait is not None:
                accepted.pop()
                results[index] = _item_error(exceptions.Throttled(wait))
        outcomes = services.message_submit_many(
            producer_id=producer.public_id,
            submissions=[submission for _, submission in accepted],
        )
        for (index, _), outcome in zip(accepted, outcomes, strict=True):
            if isinstance(outcome, Exception):
                results[index] = _item_error(outcome)
                continue
            metrics.record_submission("replayed" if outcome.replayed else "accepted")
            results[index] = {
                "status": 200 if outcome.replayed else 202,
                "replayed": outcome.replayed,
                "message": message_representation(outcome.message),
            }
        return Response({"results": results}, status=status.HTTP_200_OK)

    @action(detail=True, methods=["post"])
    def requeue(self, request: Request, pk: str) -> Response:
        serializer = RequeueSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        message = services.message_requeue(
            message_id=pk,
            actor=f"producer:{request.user.public_id}",
            reason=serializer.validated_data.get("reason") or "requeued through the API",
            producer_id=request.user.public_id,
        )
        # Read again whole: the transition wrote the status item only (no request headers,
        # the latest part of the history).
        message, _ = selectors.message_get(message_id=message.id, producer_id=message.producer_id)
        return Response(message_representation(message, with_history=True))

    @action(detail=True, methods=["get"])
    def attempts(self, request: Request, pk: str) -> Response:
        _, attempts = selectors.message_get(message_id=pk, producer_id=request.user.public_id)
        return Response({"results": [attempt_representation(attempt) for attempt in attempts]})


def _batch_items(data: Any) -> list[Any]:
    if not isinstance(data, dict) or set(data) != {"messages"}:
        raise RequestValidationError(
            "messages", 'Send {"messages": [...]}, a JSON object with one field.'
        )
    items = data["messages"]
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
        raise RequestValidationError("messages", f"Must be a list of 1 to {MAX_BATCH} messages.")
    return items


def _submission(item: Any) -> services.Submission:
    """One batch item: the single endpoint's body, plus its own optional `idempotency_key`."""
    fields = dict(item) if isinstance(item, dict) else item
    key = fields.pop("idempotency_key", None) if isinstance(fields, dict) else None
    if key is not None:
        if not isinstance(key, str):
            raise RequestValidationError("idempotency_key", "Must be a string.")
        try:
            validation.check_idempotency_key(key)
        except validation.RuleViolation as violation:
            raise RequestValidationError("idempotency_key", str(violation)) from None
    serializer = MessageSubmitSerializer(data=fields)
    serializer.is_valid(raise_exception=True)
    return serializer.to_submission(key)


def _item_error(exc: Exception) -> dict[str, Any]:
    """A batch item's error: its status and the envelope the single endpoint would answer
    with (and `retry_after` where that one would send Retry-After)."""
    status_code, code, message, details, headers = classify(exc)
    metrics.record_submission("rejected", code)
    result: dict[str, Any] = {"status": status_code, **envelope(code, message, details)}
    if "Retry-After" in headers:
        result["retry_after"] = int(headers["Retry-After"])
    return result


# Query parameters: absent means the default; present, even empty, must be valid.


def _status(raw: str | None) -> Status | None:
    if raw is None:
        return None
    try:
        return Status(raw)
    except ValueError:
        allowed = ", ".join(s.value for s in Status)
        raise RequestValidationError("status", f"Must be one of {allowed}.") from None


def _cursor(raw: str | None) -> str | None:
    if raw == "":
        raise RequestValidationError("cursor", "Must be the next_cursor of a page, or absent.")
    return raw


def _page_size(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_PAGE_SIZE
    if not validation.is_decimal(raw) or not 1 <= int(raw) <= MAX_PAGE_SIZE:
        raise RequestValidationError("limit", f"Must be an integer from 1 to {MAX_PAGE_SIZE}.")
    return int(raw)
