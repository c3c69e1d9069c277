"""The one place that shapes API errors.

Every error leaves as `{"error": {"code": ..., "message": ..., "details": {...}}}` with a stable code:
DRF's own exceptions, Herald's domain exceptions, and anything unexpected (logged, answered without
a stack trace).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response

from notifications import metrics
from notifications.api.parsers import PayloadTooLarge
from notifications.aws import AWSRefused, AWSUnavailable
from notifications.domain import (
    IdempotencyKeyReused,
    InvalidState,
    MessageNotFound,
    MessageTooLarge,
)
from notifications.selectors import InvalidCursor

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5


class RequestValidationError(exceptions.APIException):
    """A validation failure outside a serializer (query parameters, headers)."""

    status_code = status.HTTP_400_BAD_REQUEST

    def __init__(self, field: str, message: str, code: str = "invalid") -> None:
        super().__init__(message)
        self.details = {field: [{"message": message, "code": code}]}


def envelope(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def _field_details(detail: Any) -> dict[str, Any]:
    """DRF's nested ValidationError detail -> {field: [{"message", "code"}]}."""
    if isinstance(detail, dict):
        return {str(key): _field_messages(value) for key, value in detail.items()}
    return {"non_field_errors": _field_messages(detail)}


def _field_messages(value: Any) -> list[dict[str, str]]:
    if isinstance(value, list):
        return [item for entry in value for item in _field_messages(entry)]
    if isinstance(value, dict):
        return [
            {"message": f"{key}: {item['message']}", "code": item["code"]}
            for key, inner in value.items()
            for item in _field_messages(inner)
        ]
    return [{"message": str(value), "code": getattr(value, "code", "invalid")}]


def classify(exc: Exception) -> tuple[int, str, str, dict[str, Any], dict[str, str]]:
    """(status, code, message, details, extra headers) for an exception."""
    if isinstance(exc, exceptions.ValidationError):
        return 400, "VALIDATION_ERROR", "The request is not valid.", _field_details(exc.detail), {}
    if isinstance(exc, RequestValidationError):
        return 400, "VALIDATION_ERROR", "The request is not valid.", exc.details, {}
    if isinstance(exc, InvalidCursor):
        details = {"cursor": [{"message": str(exc), "code": "invalid"}]}
        return 400, "VALIDATION_ERROR", "The request is not valid.", details, {}
    if isinstance(exc, exceptions.ParseError):
        details = {"body": [{"message": str(exc.detail), "code": "malformed_json"}]}
        return 400, "VALIDATION_ERROR", "The request body is not valid JSON.", details, {}
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        headers = {"WWW-Authenticate": 'Bearer realm="herald"'}
        return 401, "AUTHENTICATION_FAILED", str(exc.detail), {}, headers
    if isinstance(exc, exceptions.PermissionDenied):
        return 403, "PERMISSION_DENIED", str(exc.detail), {}, {}
    if isinstance(exc, MessageNotFound | exceptions.NotFound | Http404):
        return 404, "NOT_FOUND", "No such message.", {}, {}
    if isinstance(exc, exceptions.MethodNotAllowed):
        return 405, "METHOD_NOT_ALLOWED", str(exc.detail), {}, {}
    if isinstance(exc, exceptions.NotAcceptable):
        return 406, "NOT_ACCEPTABLE", str(exc.detail), {}, {}
    if isinstance(exc, InvalidState):
        details = {"status": exc.message.status.value}
        return 409, "INVALID_STATE", f"The message is {exc.message.status}.", details, {}
    if isinstance(exc, PayloadTooLarge | RequestDataTooBig):
        # RequestDataTooBig: Django's own limit, met when the request did not come through
        # api.body_limit (the ASGI entry point, the test client).
        return 413, "PAYLOAD_TOO_LARGE", str(PayloadTooLarge().detail), {}, {}
    if isinstance(exc, MessageTooLarge):
        message = f"The message takes {exc.size} bytes to store; at most {exc.limit} fit."
        return 413, "PAYLOAD_TOO_LARGE", message, {"size": exc.size, "limit": exc.limit}, {}
    if isinstance(exc, exceptions.UnsupportedMediaType):
        return 415, "UNSUPPORTED_MEDIA_TYPE", "Send the request body as application/json.", {}, {}
    if isinstance(exc, IdempotencyKeyReused):
        message = "This Idempotency-Key was already used for a different request."
        return 422, "IDEMPOTENCY_KEY_REUSED", message, {"message_id": exc.existing.id}, {}
    if isinstance(exc, exceptions.Throttled):
        # Rounded up: a client that waits exactly this long is past the window's end.
        headers = {"Retry-After": str(math.ceil(exc.wait or 1))}
        return 429, "RATE_LIMITED", "Too many requests.", {}, headers
    if isinstance(exc, AWSRefused):  # before AWSUnavailable, its base: a retry would not help
        logger.warning("storage refused the request: %s", exc)
        message = "The message store refused this request as invalid; repeating it will not help."
        return 400, "VALIDATION_ERROR", message, {}, {}
    if isinstance(exc, AWSUnavailable):
        logger.warning("storage unavailable: %s", exc)
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
        message = "Herald cannot store messages right now; nothing was written. Retry later."
        return 503, "SYSTEM_ERROR", message, {}, headers
    if isinstance(exc, exceptions.APIException):
        return exc.status_code, "ERROR", str(exc.detail), {}, {}
    logger.exception("unexpected error in the API")
    return 500, "INTERNAL_ERROR", "Unexpected error. It has been logged.", {}, {}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    status_code, code, message, details, headers = classify(exc)
    if getattr(context.get("view"), "action", None) == "create":
        metrics.record_submission("rejected", code)
    return Response(envelope(code, message, details), status=status_code, headers=headers)


def api_not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    return JsonResponse(envelope("NOT_FOUND", "No such endpoint."), status=404)
