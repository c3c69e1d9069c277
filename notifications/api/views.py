"""The producer API: thin views over services and selectors."""

from __future__ import annotations

from typing import Any

from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import MethodNotAllowed
from rest_framework.request import Request
from rest_framework.response import Response

from notifications import metrics, selectors, services, validation
from notifications.api.errors import RequestValidationError
from notifications.api.serializers import (
    MessageSubmitSerializer,
    attempt_representation,
    message_representation,
)
from notifications.api.throttling import ProducerIntakeThrottle
from notifications.domain import Status

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 50


class ProducerViewSet(viewsets.ViewSet):
    """A producer API resource. A method its route does not serve is answered 405, with `Allow`,
    before authentication: DRF would authenticate first, so a TRACE without a key came back 401.
    OPTIONS and TRACE are not part of the API."""

    http_method_names = ["get", "post", "put", "patch", "delete", "head"]

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        if request.method not in self.allowed_methods:
            raise MethodNotAllowed(request.method)
        super().initial(request, *args, **kwargs)


class MessageViewSet(ProducerViewSet):
    lookup_value_regex = r"[^/]+"
    throttle_classes = [ProducerIntakeThrottle]

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
        status_filter = request.query_params.get("status")
        if status_filter:
            try:
                status_filter = Status(status_filter.upper())
            except ValueError:
                allowed = ", ".join(s.value for s in Status)
                raise RequestValidationError("status", f"Must be one of {allowed}.") from None
        limit = _page_size(request.query_params.get("limit"))
        messages, next_cursor = selectors.message_list(
            producer_id=request.user.public_id,
            status=status_filter or None,
            cursor=request.query_params.get("cursor") or None,
            limit=limit,
        )
        return Response(
            {
                "results": [message_representation(message) for message in messages],
                "next_cursor": next_cursor,
            }
        )

    @action(detail=True, methods=["post"])
    def requeue(self, request: Request, pk: str) -> Response:
        reason = request.data.get("reason", "") if isinstance(request.data, dict) else ""
        message = services.message_requeue(
            message_id=pk,
            actor=f"producer:{request.user.public_id}",
            reason=str(reason)[:500] or "requeued through the API",
            producer_id=request.user.public_id,
        )
        return Response(message_representation(message, with_history=True))

    @action(detail=True, methods=["get"])
    def attempts(self, request: Request, pk: str) -> Response:
        _, attempts = selectors.message_get(message_id=pk, producer_id=request.user.public_id)
        return Response({"results": [attempt_representation(attempt) for attempt in attempts]})


def _page_size(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_PAGE_SIZE
    if not validation.is_decimal(raw) or not 1 <= int(raw) <= MAX_PAGE_SIZE:
        raise RequestValidationError("limit", f"Must be an integer from 1 to {MAX_PAGE_SIZE}.")
    return int(raw)
