"""Quick questions to AWS for /readyz and /metrics: does the table answer, does the work queue
answer, how many messages wait in each queue.

They go through the store and the queue like every AWS call, on the *probe* clients of
`notifications.aws` (one attempt, READINESS_TIMEOUT), so that a probe answers within a load
balancer's patience even when AWS does not.
"""

from __future__ import annotations

from django.conf import settings

from notifications import health
from notifications.queue import default_queue
from notifications.store import default_store


def readiness() -> health.HealthReport:
    """Both dependencies, checked side by side within READINESS_TIMEOUT."""
    return health.run_checks(
        {
            "dynamodb": lambda: default_store().check_reachable(),
            "sqs": lambda: default_queue().check_reachable(),
        },
        timeout=settings.READINESS_TIMEOUT,
    )


def queue_depths() -> dict[tuple[str, str], int]:
    """Approximate counts by (queue, state) for the work queue and the dead-letter queue."""
    return default_queue().depths(probe=True)
