"""Per-producer intake limits as a DRF throttle: a submission over its producer's limit is
answered 429 RATE_LIMITED with Retry-After (see `services.intake`)."""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from notifications import services
from notifications.models import Producer


class ProducerIntakeThrottle(BaseThrottle):
    """Counts submissions only (the `create` action); reads are not limited."""

    def __init__(self) -> None:
        self.wait_seconds: float | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        if getattr(view, "action", None) != "create" or not isinstance(request.user, Producer):
            return True
        self.wait_seconds = services.producer_intake_admit(producer=request.user)
        return self.wait_seconds is None

    def wait(self) -> float | None:
        return self.wait_seconds
