"""Submitting messages straight through the service layer, as the API would after validation."""

from __future__ import annotations

import json

from notifications.clock import Clock
from notifications.services import Submission, message_submit


def submit(
    url: str, *, headers: dict | None = None, body: object = None, clock: Clock | None = None
) -> str:
    """Submit a JSON POST to `url` for producer `prd_1`; returns the new message's id."""
    submission = Submission(
        target_url=url,
        method="POST",
        headers=headers or {},
        body=json.dumps(body if body is not None else {"event": "signup"}),
        body_is_json=True,
    )
    kwargs = {"clock": clock} if clock else {}
    return message_submit(producer_id="prd_1", submission=submission, **kwargs).message.id
