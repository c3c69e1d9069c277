"""The producer API's contract: every operation's input, every answer it can give, and examples,
for drf-spectacular to publish as OpenAPI 3.1 (GET /api/schema/, docs/openapi.yaml).

The shapes are written out here as JSON Schema rather than derived from serializers: answers are
built by `serializers.message_representation`, not by serializers, and the rules a submission
must meet (header names, header values, sizes) say more than serializer fields can. The contract
test (tests/api/test_contract.py) fuzzes the API against this document, so the two cannot drift.

To document a new operation: add its body schemas to SCHEMAS, then an `extend_schema(...)` for its
action in `message_operations` (or a new `extend_schema_view` for a new view), listing its answers
with `responses(...)`. Regenerate docs/openapi.yaml with `make openapi`.
"""

from __future__ import annotations

import re
from typing import Any

from drf_spectacular.extensions import (
    OpenApiAuthenticationExtension,
    OpenApiSerializerExtension,
)
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import serializers

from notifications import validation
from notifications.api.serializers import (
    DEFAULT_PAGE_SIZE,
    MAX_BATCH,
    MAX_PAGE_SIZE,
    MAX_REQUEUE_REASON,
    MessageSubmitSerializer,
    RequeueSerializer,
)
from notifications.domain import FailureReason, Status

API_DESCRIPTION = """\
Herald calls external vendors' HTTP(S) APIs for the company's own systems, reliably: a
producer submits the call it wants made (target URL, method, headers, body), Herald stores it
durably, answers at once, and delivers it with retries and backoff, recording every attempt.
Delivery is **at-least-once**: every attempt carries the same `Herald-Message-Id`.

**Authentication.** Every operation takes `Authorization: Bearer <api key>` (keys look like
`hrld_<id>_<secret>`; an operator creates them). This document and its Swagger UI are readable
without one.

**Errors.** Every error has one shape, `{"error": {"code", "message", "details"}}`, with a
stable `code` (see the `Error` schema). A method a path does not serve is
`405 METHOD_NOT_ALLOWED` with an `Allow` header, and a path that does not exist is
`404 NOT_FOUND`, whether or not the request carries a key. A bug is `500 INTERNAL_ERROR`,
without details; it is logged and is not part of the contract.

**Limits.** A request body over `MAX_MESSAGE_BYTES` (256 KiB by default) is
`413 PAYLOAD_TOO_LARGE`. Submissions are limited per producer (`429 RATE_LIMITED` with
`Retry-After`). When the message store cannot be reached, nothing is written and the answer is
`503 SYSTEM_ERROR` with `Retry-After`.
"""


# -- components -----------------------------------------------------------------------------------


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _any_case(word: str) -> str:
    """A regular expression matching `word` in any letter case (JSON Schema patterns take no
    flags): `te` -> `[Tt][Ee]`."""
    return "".join(f"[{ch.upper()}{ch.lower()}]" if ch.isalpha() else re.escape(ch) for ch in word)


_FORBIDDEN_HEADER_NAME = "^(?:{})$|^(?:{})".format(
    "|".join(_any_case(name) for name in sorted(validation.FORBIDDEN_HEADERS)),
    "|".join(_any_case(prefix) for prefix in validation.FORBIDDEN_HEADER_PREFIXES),
)
_LABEL = "[A-Za-z0-9_-]{1,63}"
_LAST_LABEL = "[A-Za-z][A-Za-z0-9_-]{0,62}"  # a letter first: never an IP address literal
_PORT = "(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
TARGET_URL_PATTERN = (
    rf"^[Hh][Tt][Tt][Pp][Ss]?://(?:{_LABEL}\.)*{_LAST_LABEL}(?::{_PORT})?(?:[/?#][!-~]*)?$"
)

TIMESTAMP = {
    "type": "string",
    "format": "date-time",
    "description": "UTC with microseconds, e.g. `2026-11-25T10:00:00.000000Z`.",
}
MESSAGE_ID = {
    "type": "string",
    "pattern": "^msg_[a-z2-7]{26}$",
    "description": "Herald's id of the message, the same on every attempt (`Herald-Message-Id`).",
    "examples": ["msg_3kq7m2pnd4r5s6t7u2vwyz4abc"],
}
FAILURE_REASONS = {
    FailureReason.HTTP_STATUS: "The target answered with a status that is not 2xx (retried for 408, 425, 429 and 5xx).",
    FailureReason.TIMEOUT: "No complete answer within the delivery deadline (retried).",
    FailureReason.CONNECTION_FAILED: "The connection was refused, reset or broken (retried).",
    FailureReason.TLS_FAILED: "The TLS handshake or the certificate check failed (retried).",
    FailureReason.NAME_NOT_RESOLVED: "The target's host name did not resolve in time (retried).",
    FailureReason.TARGET_NOT_ALLOWED: "The target resolved to an address Herald may not call (not retried).",
    FailureReason.INVALID_HOST: "The host name has no ASCII (IDNA) form (not retried).",
    FailureReason.REQUEST_NOT_SENDABLE: "The request cannot be put on the wire (not retried).",
    FailureReason.RETRY_BUDGET_SPENT: "Given up before a call: the retry budget was spent.",
    FailureReason.PRODUCER_DEACTIVATED: "Held, not failed: the producer is deactivated; the message goes once it is reactivated.",
}
ERROR_CODES = {
    "VALIDATION_ERROR": "400: invalid field, unknown field, malformed JSON, bad query parameter or Idempotency-Key.",
    "AUTHENTICATION_FAILED": "401: missing, malformed or unknown API key, or a deactivated producer.",
    "PERMISSION_DENIED": "403: authenticated but not allowed.",
    "NOT_FOUND": "404: no such message (or not yours), or no such path.",
    "METHOD_NOT_ALLOWED": "405: the path does not serve this method (see `Allow`).",
    "NOT_ACCEPTABLE": "406: the `Accept` header excludes application/json.",
    "INVALID_STATE": "409: the message is not in a state that allows the change.",
    "PAYLOAD_TOO_LARGE": "413: the body or the message to store is too large.",
    "UNSUPPORTED_MEDIA_TYPE": "415: the body is not application/json.",
    "IDEMPOTENCY_KEY_REUSED": "422: the Idempotency-Key was used for a different request.",
    "RATE_LIMITED": "429: over the producer's submission limit; retry after `Retry-After` seconds.",
    "SYSTEM_ERROR": "503: the message store cannot be reached; nothing was written; retry after `Retry-After` seconds.",
    "INTERNAL_ERROR": "500: a bug, logged on the server.",
}


def _described_enum(values: dict[Any, str]) -> dict[str, Any]:
    lines = "\n".join(f"* `{value}`: {meaning}" for value, meaning in values.items())
    return {"type": "string", "enum": [str(value) for value in values], "description": lines}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"oneOf": [schema, {"type": "null"}]}


def _object(properties: dict[str, Any], *, optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """A closed object: every property listed, all of them present unless named optional."""
    return {
        "type": "object",
        "properties": properties,
        "required": [name for name in properties if name not in optional],
        "additionalProperties": False,
    }


_MESSAGE_PROPERTIES: dict[str, Any] = {
    "id": MESSAGE_ID,
    "status": ref("Status"),
    "target": ref("Target"),
    "metadata": {"type": "object", "description": "What you stored with the message."},
    "idempotency_key": _nullable({"type": "string"}),
    "created_at": TIMESTAMP,
    "updated_at": TIMESTAMP,
    "attempt_count": {"type": "integer", "minimum": 0},
    "last_error": _nullable(ref("FailureReason")),
    "next_attempt_at": _nullable(TIMESTAMP),
}


def _error(code: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """The envelope narrowed to one code (and, where it has them, that code's details)."""
    narrowed: dict[str, Any] = {"code": {"const": code}}
    if details is not None:
        narrowed["details"] = details
    return {
        "allOf": [ref("Error")],
        "properties": {"error": {"properties": narrowed}},
    }


# Request bodies, each the schema of the serializer that reads it (see the extensions below).
REQUEST_SCHEMAS: dict[str, dict[str, Any]] = {
    "MessageSubmission": _object(
        {
            "target_url": {
                "type": "string",
                "maxLength": validation.MAX_URL_LENGTH,
                "pattern": TARGET_URL_PATTERN,
                "description": (
                    "Absolute http or https URL with a host name, without user information. "
                    "An IP address literal is refused (400, detail code `target_not_allowed`) "
                    "unless it is globally routable or in `DELIVERY_ALLOWED_NETWORKS`; host "
                    "names are checked when they are resolved, at delivery. Herald also "
                    "takes internationalised host names (sent in their IDNA form)."
                ),
                "examples": ["https://ads.example.com/conversions"],
            },
            "method": {**ref("HttpMethod"), "default": "POST"},
            "headers": {
                "type": "object",
                "maxProperties": validation.MAX_HEADERS,
                "propertyNames": {
                    "pattern": r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$",
                    "not": {"pattern": _FORBIDDEN_HEADER_NAME},
                },
                "additionalProperties": {
                    "type": "string",
                    "maxLength": validation.MAX_HEADER_VALUE_BYTES,
                    "pattern": r"^[\t\x20-\x7e\x80-\xff]*$",
                },
                "default": {},
                "description": (
                    "Sent as given. Names are RFC 9110 tokens, each at most once in any "
                    "letter case; Host, Content-Length, Transfer-Encoding, Connection, "
                    "Keep-Alive, Upgrade, TE, Trailer, Herald-Message-Id, `Proxy-*` and "
                    "`webhook-*` are Herald's. Values are visible ASCII, space, tab or "
                    "Latin-1. Secret-looking values are masked in every answer."
                ),
            },
            "body": {
                "description": (
                    "A JSON value (not null) is sent as JSON, with `Content-Type: "
                    "application/json` unless you set one; a string is sent as it is; null "
                    "or absent sends no body. Nested at most 64 levels."
                ),
                "default": None,
            },
            "metadata": {
                "type": "object",
                "default": {},
                "description": "Stored with the message and shown back (also in list rows); never "
                "sent. At most 2,048 bytes as compact UTF-8 JSON.",
            },
        },
        optional=("method", "headers", "body", "metadata"),
    ),
    "RequeueRequest": _object(
        {
            "reason": {
                "type": "string",
                "maxLength": MAX_REQUEUE_REASON,
                "description": "Kept in the message's history.",
            }
        },
        optional=("reason",),
    ),
}

_SUBMISSION = REQUEST_SCHEMAS["MessageSubmission"]
REQUEST_SCHEMAS["MessageBatch"] = _object(
    {
        "messages": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_BATCH,
            "items": {
                **_SUBMISSION,
                "properties": {
                    **_SUBMISSION["properties"],
                    "idempotency_key": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": validation.MAX_IDEMPOTENCY_KEY_LENGTH,
                        "pattern": "^[ -~]+$",
                        "description": "This item's Idempotency-Key (see submitMessage).",
                    },
                },
            },
        }
    }
)

# The envelope's inner object (an error, as a batch item's result carries it).
SCHEMAS_ERROR_BODY = _object(
    {
        "code": _described_enum(ERROR_CODES),
        "message": {"type": "string", "description": "For people; may change."},
        "details": {"type": "object"},
    }
)

# Everything else the operations refer to.
SCHEMAS: dict[str, dict[str, Any]] = {
    "Status": {
        "type": "string",
        "enum": [status.value for status in Status],
        "description": (
            "PENDING (stored, being queued) → QUEUED → PROCESSING (a worker is calling the "
            "target) → COMPLETED (2xx) or back to QUEUED for a retry, or FAILED (permanent "
            "failure or retry budget spent; requeue it to try again)."
        ),
    },
    "FailureReason": _described_enum(FAILURE_REASONS),
    "HttpMethod": {"type": "string", "enum": list(validation.ALLOWED_METHODS)},
    "Target": {
        **_object(
            {
                "method": ref("HttpMethod"),
                "url": {"type": "string", "description": "Secret-looking query parameters masked."},
                "host": {"type": "string"},
                "headers": {
                    "type": "object",
                    "additionalProperties": {"type": "string"},
                    "description": "Secret-looking values masked (`********`). Not in list rows "
                    "(read from the message's status alone): get the message for them.",
                },
            },
            optional=("headers",),
        ),
        "description": "The call as submitted, with secrets masked.",
    },
    "Message": _object(_MESSAGE_PROPERTIES),
    "HistoryEntry": _object(
        {
            "from": _nullable(ref("Status")),
            "to": ref("Status"),
            "at": TIMESTAMP,
            "actor": {
                "type": "string",
                "description": "`producer:<id>` (you), or only the kind: `worker`, `operator`, `reconciler`.",
            },
            "reason": {"type": "string"},
        }
    ),
    "MessageWithHistory": _object(
        {**_MESSAGE_PROPERTIES, "history": {"type": "array", "items": ref("HistoryEntry")}}
    ),
    "MessagePage": _object(
        {
            "results": {"type": "array", "items": ref("Message"), "maxItems": MAX_PAGE_SIZE},
            "next_cursor": {
                **_nullable({"type": "string"}),
                "description": "Pass as `cursor` for the next (older) page; null at the end.",
            },
        }
    ),
    "Attempt": _object(
        {
            "number": {"type": "integer", "minimum": 1},
            "started_at": TIMESTAMP,
            "duration_ms": {"type": "integer", "minimum": 0},
            "outcome": {"type": "string", "enum": ["delivered", "retry", "permanent"]},
            "status_code": _nullable({"type": "integer", "minimum": 100, "maximum": 599}),
            "error": _nullable(ref("FailureReason")),
            "response_headers": {"type": "object", "additionalProperties": {"type": "string"}},
            "response_snippet": {
                "type": "string",
                "description": "The first 1 KiB of the target's answer.",
            },
        }
    ),
    "AttemptList": _object({"results": {"type": "array", "items": ref("Attempt")}}),
    "BatchResults": _object(
        {
            "results": {
                "type": "array",
                "maxItems": MAX_BATCH,
                "description": "One result per submitted item, in the same order.",
                "items": {"oneOf": [ref("BatchAccepted"), ref("BatchRefused")]},
            }
        }
    ),
    "BatchAccepted": _object(
        {
            "status": {
                "type": "integer",
                "enum": [200, 202],
                "description": "202 a new message; 200 the same Idempotency-Key and request "
                "again (a replay).",
            },
            "replayed": {"type": "boolean"},
            "message": ref("Message"),
        }
    ),
    "BatchRefused": _object(
        {
            "status": {
                "type": "integer",
                "minimum": 400,
                "maximum": 599,
                "description": "What submitMessage would have answered for this item alone.",
            },
            "error": SCHEMAS_ERROR_BODY,
            "retry_after": {
                "type": "integer",
                "minimum": 1,
                "description": "Seconds to wait before submitting this item again (429, 503).",
            },
        },
        optional=("retry_after",),
    ),
    "Error": _object({"error": SCHEMAS_ERROR_BODY}),
    "ValidationError": _error(
        "VALIDATION_ERROR",
        {
            "type": "object",
            "description": "Each field (or `body`, a header or query parameter name) with what is wrong with it.",
            "additionalProperties": {
                "type": "array",
                "items": _object({"message": {"type": "string"}, "code": {"type": "string"}}),
            },
        },
    ),
    "AuthenticationFailed": _error("AUTHENTICATION_FAILED"),
    "NotFound": _error("NOT_FOUND"),
    "NotAcceptable": _error("NOT_ACCEPTABLE"),
    "InvalidState": _error("INVALID_STATE", _object({"status": ref("Status")})),
    "PayloadTooLarge": _error(
        "PAYLOAD_TOO_LARGE",
        {
            **_object(
                {"size": {"type": "integer"}, "limit": {"type": "integer"}},
                optional=("size", "limit"),
            ),
            "description": "For a message too large to store: its size and the limit, in bytes.",
        },
    ),
    "UnsupportedMediaType": _error("UNSUPPORTED_MEDIA_TYPE"),
    "IdempotencyKeyReused": _error("IDEMPOTENCY_KEY_REUSED", _object({"message_id": MESSAGE_ID})),
    "RateLimited": _error("RATE_LIMITED"),
    "SystemError": _error("SYSTEM_ERROR"),
}


# -- answers --------------------------------------------------------------------------------------


def _header(name: str, schema: dict[str, Any], description: str, statuses: list[int]) -> Any:
    return OpenApiParameter(
        name,
        schema,
        OpenApiParameter.HEADER,
        required=True,
        description=description,
        response=statuses,
    )


def _error_example(
    name: str, status: int, code: str, message: str, details: dict | None = None
) -> Any:
    return OpenApiExample(
        name,
        value={"error": {"code": code, "message": message, "details": details or {}}},
        response_only=True,
        status_codes=[status],
    )


ERRORS: dict[int, OpenApiResponse] = {
    400: OpenApiResponse(
        ref("ValidationError"),
        "VALIDATION_ERROR: the request is not valid; nothing was written. Repeating it will not help.",
        [
            _error_example(
                "not http",
                400,
                "VALIDATION_ERROR",
                "The request is not valid.",
                {
                    "target_url": [
                        {
                            "message": "Only http and https URLs are allowed.",
                            "code": "target_not_allowed",
                        }
                    ]
                },
            )
        ],
    ),
    401: OpenApiResponse(
        ref("AuthenticationFailed"),
        "AUTHENTICATION_FAILED: missing, malformed or unknown API key, or a deactivated producer.",
        [_error_example("unknown key", 401, "AUTHENTICATION_FAILED", "Invalid API key.")],
    ),
    404: OpenApiResponse(
        ref("NotFound"),
        "NOT_FOUND: no such message, or not one of yours.",
        [_error_example("not found", 404, "NOT_FOUND", "No such message.")],
    ),
    406: OpenApiResponse(
        ref("NotAcceptable"),
        "NOT_ACCEPTABLE: answers are application/json only.",
    ),
    409: OpenApiResponse(
        ref("InvalidState"),
        "INVALID_STATE: only a FAILED message can be requeued; `details.status` is its status now.",
        [
            _error_example(
                409, "INVALID_STATE", "The message is COMPLETED.", {"status": "COMPLETED"}
            )
        ],
    ),
    413: OpenApiResponse(
        ref("PayloadTooLarge"),
        "PAYLOAD_TOO_LARGE: the body is over `MAX_MESSAGE_BYTES`, or the message would not fit in "
        "the store; nothing was written.",
    ),
    415: OpenApiResponse(
        ref("UnsupportedMediaType"), "UNSUPPORTED_MEDIA_TYPE: send the body as application/json."
    ),
    422: OpenApiResponse(
        ref("IdempotencyKeyReused"),
        "IDEMPOTENCY_KEY_REUSED: the key was used for a different request; "
        "`details.message_id` is the original message.",
    ),
    429: OpenApiResponse(
        ref("RateLimited"),
        "RATE_LIMITED: over your submission limit; nothing was written. Retry after `Retry-After` seconds.",
    ),
    503: OpenApiResponse(
        ref("SystemError"),
        "SYSTEM_ERROR: the message store cannot be reached; nothing was written. Retry after "
        "`Retry-After` seconds.",
    ),
}

ANSWER_HEADERS = [
    _header(
        "WWW-Authenticate",
        {"type": "string"},
        '`Bearer realm="herald"`.',
        [401],
    ),
    _header(
        "Retry-After",
        {"type": "integer", "minimum": 1},
        "Seconds to wait before trying again.",
        [429, 503],
    ),
]


def responses(success: dict[int, OpenApiResponse], *errors: int) -> dict[int, OpenApiResponse]:
    """An operation's answers: its own successes, then the listed error statuses (400, 401, 406
    and 503 are possible everywhere and always included)."""
    return {
        **success,
        **{status: ERRORS[status] for status in sorted({400, 401, 406, 503, *errors})},
    }


# -- parameters and examples (from the README) ----------------------------------------------------

IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    {
        "type": "string",
        "minLength": 1,
        "maxLength": validation.MAX_IDEMPOTENCY_KEY_LENGTH,
        "pattern": "^[ -~]+$",
    },
    OpenApiParameter.HEADER,
    description=(
        "Makes the submission safe to repeat; scoped to your API key's producer. The same key "
        "with the same request again answers 200 with the original message and "
        "`Idempotent-Replayed: true`; with a different request, 422 IDEMPOTENCY_KEY_REUSED."
    ),
    examples=[OpenApiExample("signup", value="signup-4242")],
)
PATH_ID = OpenApiParameter(
    "id", MESSAGE_ID, OpenApiParameter.PATH, description="The message's id, as submit returned it."
)
LIST_PARAMETERS = [
    OpenApiParameter("status", ref("Status"), description="Only messages in this status."),
    OpenApiParameter(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": DEFAULT_PAGE_SIZE},
        description="Messages per page.",
    ),
    OpenApiParameter(
        "cursor",
        {"type": "string", "minLength": 1},
        description="`next_cursor` of the previous page; absent for the first (newest) page.",
    ),
]

_EXAMPLE_MESSAGE = {
    "id": "msg_3kq7m2pnd4r5s6t7u2vwyz4abc",
    "status": "QUEUED",
    "target": {
        "method": "POST",
        "url": "https://ads.example.com/conversions",
        "host": "ads.example.com",
        "headers": {"Authorization": "********"},
    },
    "metadata": {"campaign": "autumn"},
    "idempotency_key": "signup-4242",
    "created_at": "2026-11-25T10:00:00.000000Z",
    "updated_at": "2026-11-25T10:00:00.041000Z",
    "attempt_count": 0,
    "last_error": None,
    "next_attempt_at": "2026-11-25T10:00:00.000000Z",
}
_EXAMPLE_HISTORY = [
    {
        "from": None,
        "to": "PENDING",
        "at": "2026-11-25T10:00:00.000000Z",
        "actor": "producer:prd_7",
        "reason": "accepted",
    },
    {
        "from": "PENDING",
        "to": "QUEUED",
        "at": "2026-11-25T10:00:00.041000Z",
        "actor": "producer:prd_7",
        "reason": "sent to the work queue",
    },
]
SUBMIT_EXAMPLES = [
    OpenApiExample(
        "signup",
        summary="Tell an ad network about a sign-up",
        value={
            "target_url": "https://ads.example.com/conversions",
            "method": "POST",
            "headers": {"Authorization": "Bearer vendor-token"},
            "body": {"event": "signup", "user_id": 4242},
            "metadata": {"campaign": "autumn"},
        },
        request_only=True,
    ),
    OpenApiExample("accepted", value=_EXAMPLE_MESSAGE, response_only=True, status_codes=[202]),
    OpenApiExample("replayed", value=_EXAMPLE_MESSAGE, response_only=True, status_codes=[200]),
]


# -- operations -----------------------------------------------------------------------------------


class BatchRequestSchema(serializers.Serializer):
    """Stands for the batch body in the schema (the view reads each item itself)."""


_MESSAGE = OpenApiResponse(ref("MessageWithHistory"), "The message with its status history.")

message_operations = extend_schema_view(
    create=extend_schema(
        operation_id="submitMessage",
        summary="Submit a notification",
        description=(
            "Stores the call durably and queues it; a worker makes it, retrying with backoff. "
            "The answer comes at once: `QUEUED`, or `PENDING` when queueing is still under way "
            "(the message is stored either way and will be delivered)."
        ),
        parameters=[
            IDEMPOTENCY_KEY,
            _header("Location", {"type": "string"}, "The message's URL.", [200, 202]),
            _header(
                "Idempotent-Replayed",
                {"type": "string", "const": "true"},
                "This is the answer to an earlier request with the same Idempotency-Key.",
                [200],
            ),
            *ANSWER_HEADERS,
        ],
        request=MessageSubmitSerializer,
        responses=responses(
            {
                202: OpenApiResponse(ref("Message"), "Accepted: a new message."),
                200: OpenApiResponse(
                    ref("Message"),
                    "The same Idempotency-Key and the same request again: the original message, "
                    "as it is now.",
                ),
            },
            413,
            415,
            422,
            429,
        ),
        examples=SUBMIT_EXAMPLES,
    ),
    list=extend_schema(
        operation_id="listMessages",
        summary="List your messages, newest first",
        description="Cursor pagination: for the next (older) page, pass the page's `next_cursor` "
        "as `cursor`, with the same `status`, until `next_cursor` is null (the `nextPage` link).",
        parameters=[*LIST_PARAMETERS, *ANSWER_HEADERS],
        responses=responses({200: OpenApiResponse(ref("MessagePage"), "One page.")}),
    ),
    batch=extend_schema(
        operation_id="submitMessageBatch",
        summary="Submit up to 100 notifications at once",
        description=(
            "Each item is submitMessage's body plus its own optional `idempotency_key`. The "
            "answer has one result per item, in order: 202 with the new message, 200 with the "
            "stored one (a replay), or the error submitMessage would have given that item (its "
            "status and envelope; 429 and 503 add `retry_after`). One bad item refuses nothing "
            "else, and each counts against your intake limit. Only a request that is not a list "
            f"of 1 to {MAX_BATCH} items is refused whole (400)."
        ),
        parameters=[*ANSWER_HEADERS],
        request=BatchRequestSchema,
        responses=responses(
            {200: OpenApiResponse(ref("BatchResults"), "One result per item, in order.")},
            413,
            415,
        ),
        examples=[
            OpenApiExample(
                "two messages",
                value={
                    "messages": [
                        {
                            "target_url": "https://ads.example.com/conversions",
                            "body": {"event": "signup", "user_id": 4242},
                            "idempotency_key": "signup-4242",
                        },
                        {"target_url": "https://crm.example.com/hooks", "body": {"paid": 12}},
                    ]
                },
                request_only=True,
            )
        ],
    ),
    retrieve=extend_schema(
        operation_id="getMessage",
        summary="A message and its status history",
        description="Another producer's message is 404, like one that does not exist. Finished "
        "messages are kept for `MESSAGE_RETENTION_DAYS` (28 by default), then 404.",
        parameters=[PATH_ID, *ANSWER_HEADERS],
        responses=responses({200: _MESSAGE}, 404),
        examples=[
            OpenApiExample(
                "queued",
                value={**_EXAMPLE_MESSAGE, "history": _EXAMPLE_HISTORY},
                response_only=True,
                status_codes=[200],
            )
        ],
    ),
    attempts=extend_schema(
        operation_id="listAttempts",
        summary="A message's delivery attempts",
        description="Each attempt's outcome, the target's status code, kept response headers and "
        "the first 1 KiB of its answer.",
        parameters=[PATH_ID, *ANSWER_HEADERS],
        responses=responses({200: OpenApiResponse(ref("AttemptList"), "Oldest first.")}, 404),
    ),
    requeue=extend_schema(
        operation_id="requeueMessage",
        summary="Requeue a FAILED message",
        description="FAILED → QUEUED with a fresh retry budget. Any other status is 409.",
        parameters=[PATH_ID, *ANSWER_HEADERS],
        request=RequeueSerializer,
        responses=responses({200: _MESSAGE}, 404, 409, 413, 415),
        examples=[
            OpenApiExample("vendor back", value={"reason": "vendor back"}, request_only=True)
        ],
    ),
)


# -- authentication and the finished document -----------------------------------------------------


class ContractSchema(AutoSchema):
    """drf-spectacular's AutoSchema for answers written out in SCHEMAS: they say themselves whether
    they are lists, so the `list` action's answer is not wrapped in an array."""

    def _is_list_view(self, serializer: Any = None) -> bool:
        return False


class _RequestBody(OpenApiSerializerExtension):
    """A request serializer, documented by its entry in REQUEST_SCHEMAS."""

    component: str

    def get_name(self, auto_schema: Any, direction: Any) -> str:
        return self.component

    def map_serializer(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        return REQUEST_SCHEMAS[self.component]


class MessageSubmission(_RequestBody):
    target_class = MessageSubmitSerializer
    component = "MessageSubmission"


class RequeueRequest(_RequestBody):
    target_class = RequeueSerializer
    component = "RequeueRequest"


class MessageBatch(_RequestBody):
    target_class = BatchRequestSchema
    component = "MessageBatch"


class ProducerKeyScheme(OpenApiAuthenticationExtension):
    target_class = "notifications.api.authentication.ProducerKeyAuthentication"
    name = "producerKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "hrld_<id>_<secret>",
            "description": "A producer's API key: `Authorization: Bearer <api key>`.",
        }


_ID_FROM_BODY = {"id": "$response.body#/id"}
_MESSAGE_LINKS = {
    "getMessage": {"operationId": "getMessage", "parameters": _ID_FROM_BODY},
    "listAttempts": {"operationId": "listAttempts", "parameters": _ID_FROM_BODY},
    "requeueMessage": {"operationId": "requeueMessage", "parameters": _ID_FROM_BODY},
}
# OpenAPI links: how an answer leads to the next request (drf-spectacular has no annotation for
# them). Keyed by operation id and status.
LINKS: dict[tuple[str, str], dict[str, Any]] = {
    ("submitMessage", "202"): _MESSAGE_LINKS,
    ("submitMessage", "200"): _MESSAGE_LINKS,
    ("getMessage", "200"): {
        name: link for name, link in _MESSAGE_LINKS.items() if name != "getMessage"
    },
    ("listMessages", "200"): {
        "nextPage": {
            "operationId": "listMessages",
            "parameters": {
                "cursor": "$response.body#/next_cursor",
                "status": "$request.query.status",
                "limit": "$request.query.limit",
            },
            "description": "The next (older) page, while `next_cursor` is not null.",
        }
    },
}


def complete_document(result: dict[str, Any], generator: Any, **kwargs: Any) -> dict[str, Any]:
    """drf-spectacular post-processing hook: the API's description, the shared schemas and the
    links between operations."""
    result["info"]["description"] = API_DESCRIPTION
    result.setdefault("components", {}).setdefault("schemas", {}).update(SCHEMAS)
    for path in result["paths"].values():
        for operation in path.values():
            for status, answer in operation["responses"].items():
                links = LINKS.get((operation["operationId"], status))
                if links:
                    answer["links"] = links
    return result
