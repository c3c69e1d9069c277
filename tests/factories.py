"""Test data builders."""

from __future__ import annotations

import itertools
from typing import Any

from notifications.clock import system_clock
from notifications.domain import DeliveryRequest, HistoryEntry, Message, Status, format_timestamp
from notifications.models import Producer

_names = itertools.count(1)


def make_producer(name: str | None = None, *, active: bool = True) -> tuple[Producer, str]:
    producer = Producer(name=name or f"producer-{next(_names)}", is_active=active)
    key = producer.set_new_api_key()
    producer.save()
    return producer, key


def message_payload(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "target_url": "https://vendor.example.com/hooks/signup",
        "method": "POST",
        "headers": {"Authorization": "Bearer vendor-secret", "X-Campaign": "autumn"},
        "body": {"event": "signup", "user": 42},
        "metadata": {"source": "tests"},
    }
    payload.update(overrides)
    return payload


def build_message(
    *,
    status: Status = Status.PENDING,
    producer_id: str = "prd_1",
    message_id: str | None = None,
    created_at: str | None = None,
    url: str = "https://vendor.example.com/hook",
    **fields: Any,
) -> Message:
    now = created_at or format_timestamp(system_clock.now())
    return Message(
        id=message_id or f"msg_test{next(_names):022d}",
        producer_id=producer_id,
        status=status,
        request=DeliveryRequest(
            url=url,
            method="POST",
            headers={},
            body='{"a":1}',
            body_is_json=True,
        ),
        created_at=now,
        updated_at=now,
        history=(HistoryEntry(None, status, now, "tests", "built"),),
        budget_started_at=fields.pop("budget_started_at", now),
        **fields,
    )
