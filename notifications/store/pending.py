"""Status-count changes written behind: summed in memory, written as one UpdateItem a second;
and attempts per hour for the dashboard's chart, written every ATTEMPTS_EVERY flushes."""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable

from notifications import aws
from notifications.domain import Status

logger = logging.getLogger(__name__)

# Attempts per hour change the dashboard's chart, not its counts: written every this many
# intervals (and before every statistics read, and at exit), not every second.
ATTEMPTS_EVERY = 10


class PendingCounts:
    """Status-count changes not yet written to the table: summed in memory and written as one
    UpdateItem every `interval` seconds by a background thread, before every statistics read,
    and at exit. With `interval` 0 every change is written at once.

    A change whose write fails stays pending for the next write. Changes still pending when the
    process dies without exiting (kill -9, power loss) are lost: the counts are then off by at
    most an interval's worth of changes until `recount_status_counters` repairs them."""

    def __init__(
        self,
        write: Callable[[dict[str, int]], None],
        interval: float,
        write_attempts: Callable[[dict[tuple[str, str], int]], None] | None = None,
    ) -> None:
        self._write = write
        self._write_attempts = write_attempts
        self.interval = interval
        self._deltas: Counter[str] = Counter()
        self._attempts: Counter[tuple[str, str]] = Counter()  # (hour, outcome) -> count
        self._flushes = 0
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._flusher_pid: int | None = None
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        """A forked child starts empty: its parent writes what it had pending, and a lock the
        parent held at the fork must not stay held in the child."""
        self._deltas = Counter()
        self._attempts = Counter()
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._flusher_pid = None

    def add(self, to: Status, previous: Status | None) -> None:
        with self._lock:
            self._deltas[to.value] += 1
            if previous is not None:
                self._deltas[previous.value] -= 1
        self._changed()

    def add_attempt(self, hour: str, outcome: str) -> None:
        """One attempt started in `hour` (`2026-11-25T14`): outcome "delivered" or "failed"."""
        with self._lock:
            self._attempts[(hour, outcome)] += 1
        self._changed()

    def _changed(self) -> None:
        with self._lock:
            start = self.interval > 0 and self._flusher_pid != os.getpid()
            if start:  # first change in this process (a forked child starts its own)
                self._flusher_pid = os.getpid()
        if self.interval <= 0:
            self.flush()
        elif start:
            threading.Thread(target=self._run, name="status-counts", daemon=True).start()
            atexit.register(self.flush)

    def flush(self, *, everything: bool = True) -> bool:
        """Write what is pending (with `everything` False, the attempts only every
        ATTEMPTS_EVERY calls); False if a write failed (its changes stay pending)."""
        with self._flushing:
            self._flushes += 1
            with self._lock:
                deltas = {name: change for name, change in self._deltas.items() if change}
                self._deltas.clear()
                attempts: dict[tuple[str, str], int] = {}
                if everything or self._flushes % ATTEMPTS_EVERY == 0:
                    attempts = dict(self._attempts)
                    self._attempts.clear()
            written = True
            if deltas:
                try:
                    self._write(deltas)
                except aws.AWSUnavailable as error:
                    with self._lock:
                        self._deltas.update(deltas)
                    logger.warning(
                        "status counts not written yet (kept for the next try): %s", error
                    )
                    written = False
            if attempts and self._write_attempts is not None:
                try:
                    self._write_attempts(attempts)
                except aws.AWSUnavailable as error:
                    with self._lock:
                        self._attempts.update(attempts)
                    logger.warning(
                        "attempt counts not written yet (kept for the next try): %s", error
                    )
                    written = False
            return written

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            try:
                self.flush(everything=False)
            except Exception:  # keep counting whatever happened to one write
                logger.exception("status counts: unexpected error while writing")
