"""Stopping a worker process on SIGTERM or SIGINT, however often and however close together the
signals come (a supervisor that repeats its SIGTERM, an operator who presses Ctrl-C twice).

A Python signal handler runs in the main thread, between two bytecodes of whatever that thread was
doing, and the handler of a second signal can run inside the first handler the same way. So the
handler must not take a lock: one that the interrupted code holds is never released while the
handler waits for it. Calling `Worker.stop()` from the handler did: `threading.Event.set()` takes
the event's (non-reentrant) lock, and a second SIGTERM whose handler ran while the first handler
was inside `set()` waited for that lock forever. The main thread hung there with whatever it held
(during the drain, the worker's slot lock, which every delivery thread needs to finish), and the
worker never exited, however long its grace period.

So the handler here only puts the signal number on a `queue.SimpleQueue`, whose `put` is
reentrant (CPython documents it as safe to call from code that interrupts other code, such as a
signal handler), and a thread of its own takes the signals from there: it calls the callback
(which reports the signal and stops the worker) outside any signal handler, where locks are safe.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
from collections.abc import Callable, Iterable

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def stop_on_signals(
    on_signal: Callable[[int, int], None], signals: Iterable[int] = STOP_SIGNALS
) -> threading.Thread:
    """Call `on_signal(signum, count)` for each of `signals` the process receives, on a thread of
    its own (`count`: 1 for the first signal, 2 for the next, ...). Call this from the main thread
    (Python installs signal handlers only there). Returns the (daemon) thread."""
    received: queue.SimpleQueue[int] = queue.SimpleQueue()

    def handler(signum: int, frame: object) -> None:
        # No lock, no I/O: this may run inside any code of the main thread, itself included.
        received.put_nowait(signum)

    def relay() -> None:
        count = 0
        while True:
            signum = received.get()
            count += 1
            try:
                on_signal(signum, count)
            except Exception:
                logger.exception("handling signal %d failed", signum)

    thread = threading.Thread(target=relay, name="stop-signals", daemon=True)
    thread.start()
    for signum in signals:
        signal.signal(signum, handler)
    return thread
