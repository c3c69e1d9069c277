"""The delivery worker (`run_worker` builds one from settings and runs it).

- `loop`: the receive loop, the delivery pool, the heartbeat, `stop()` and the drain;
- `waiting`: the waiting line, where messages held back by admission keep their queue messages;
- `handling`: what happens to one queue message (claim, deliver, or wait, defer, postpone);
- `acks`: the queue messages' deletes and visibility changes, sent ten to a request;
- `stop_signals`: SIGTERM and SIGINT stop the worker, without work inside the signal handler.

The use cases (claim, record, defer) live in `services`, the HTTP call in `delivery.http`, and the
retry rules in `delivery.policy` and `delivery.backoff`.
"""

from notifications.worker.loop import Worker, default_worker_id

__all__ = ["Worker", "default_worker_id"]
