"""Herald's use cases. Views, admin pages, management commands and the worker call these;
nothing else changes a message or a producer.

Writes go through `store.MessageStore.transition`, the guarded status change; queue sends go
through `queue.WorkQueue`. Time comes from an injected clock. One module per area:
`messages` (submit, enqueue, requeue), `intake` (producers' rate limits), `delivery` (claim, record, defer, the waiting line's
decisions), `recovery` (reconcile, recount), `producers` (API keys, signing secrets), `hosts`
(pause and resume a target host, deliver now, host policies from the command line).
"""

from notifications.services.delivery import (
    Candidate,
    ClaimResult,
    ClaimState,
    DeliveryOutcome,
    claim_blocker,
    delivery_claim,
    delivery_give_up,
    delivery_record,
    describe_result,
)
from notifications.services.hosts import (
    DeliverNowReport,
    PullForward,
    host_deliver_now,
    host_pause,
    host_policy_set,
    host_resume,
    message_deliver_now,
)
from notifications.services.intake import IntakeLimiter, producer_intake_admit
from notifications.services.messages import (
    RequeueReport,
    Submission,
    SubmitResult,
    message_enqueue,
    message_id_for,
    message_requeue,
    message_submit,
    message_submit_many,
    messages_requeue_failed,
    messages_requeue_selected,
    move_next_attempt,
)
from notifications.services.producers import (
    ProducerInvalid,
    producer_api_key_rotate,
    producer_create,
    producer_ensure_with_key,
    signing_secret_rotate,
    signing_secrets_retire_old,
)
from notifications.services.recovery import messages_reconcile, status_counters_recount
from notifications.services.waiting import (
    WAITING_STATUSES,
    WaitCheck,
    delivery_blocker,
    delivery_defer,
    delivery_give_back,
    delivery_hold,
    delivery_postpone,
    delivery_wait_refresh,
)

__all__ = [
    "Candidate",
    "WAITING_STATUSES",
    "ClaimResult",
    "ClaimState",
    "DeliverNowReport",
    "DeliveryOutcome",
    "IntakeLimiter",
    "ProducerInvalid",
    "PullForward",
    "RequeueReport",
    "Submission",
    "SubmitResult",
    "WaitCheck",
    "claim_blocker",
    "delivery_blocker",
    "delivery_claim",
    "delivery_defer",
    "delivery_give_back",
    "delivery_give_up",
    "delivery_hold",
    "delivery_postpone",
    "delivery_record",
    "delivery_wait_refresh",
    "describe_result",
    "host_deliver_now",
    "host_pause",
    "host_policy_set",
    "host_resume",
    "message_deliver_now",
    "message_enqueue",
    "message_id_for",
    "message_requeue",
    "message_submit",
    "message_submit_many",
    "messages_reconcile",
    "messages_requeue_failed",
    "messages_requeue_selected",
    "move_next_attempt",
    "producer_api_key_rotate",
    "producer_create",
    "producer_ensure_with_key",
    "producer_intake_admit",
    "signing_secret_rotate",
    "signing_secrets_retire_old",
    "status_counters_recount",
]
