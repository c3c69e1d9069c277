"""Status-count changes written behind: summed in memory, written as one UpdateItem a second."""

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


class PendingCounts:
    """Status-count changes not yet written to the table: summed in memory and written as one
    UpdateItem every `interval` seconds by a background thread, before every statistics read,
    and at exit. With `interval` 0 every change is written at once.

    A change whose write fails stays pending for the next write. Changes still pending when the
    process dies without exiting (kill -9, power loss) are lost: the counts are then off by at
    most an interval's worth of changes until `recount_status_counters` repairs them."""

    def __init__(self, write: Callable[[dict[str, int]], None], interval: float) -> None:
        self._write = write
        self.interval = interval
        self._deltas: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._flusher_pid: int | None = None
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        """A forked child starts empty: its parent writes what it had pending, and a lock the
        parent held at the fork must not stay held in the child."""
        self._deltas = Counter()
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._flusher_pid = None

    def add(self, to: Status, previous: Status | None) -> None:
        with self._lock:
            self._deltas[to.value] += 1
            if previous is not None:
                self._deltas[previous.value] -= 1
            start = self.interval > 0 and self._flusher_pid != os.getpid()
            if start:  # first change in this process (a forked child starts its own)
                self._flusher_pid = os.getpid()
        if self.interval <= 0:
            self.flush()
        elif start:
            threading.Thread(target=self._run, name="status-counts", daemon=True).start()
            atexit.register(self.flush)

    def flush(self) -> bool:
        """Write what is pending; False if the write failed (the changes stay pending)."""
        with self._flushing:
            with self._lock:
                deltas = {name: change for name, change in self._deltas.items() if change}
                self._deltas.clear()
            if not deltas:
                return True
            try:
                self._write(deltas)
            except aws.AWSUnavailable as error:
                with self._lock:
                    self._deltas.update(deltas)
                logger.warning("status counts not written yet (kept for the next try): %s", error)
                return False
            return True

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            try:
                self.flush()
            except Exception:  # keep counting whatever happened to one write
                logger.exception("status counts: unexpected error while writing")
