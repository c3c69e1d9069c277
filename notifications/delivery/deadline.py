"""The deadline of an outbound call: `DELIVERY_TIMEOUT` for the whole call, not per socket read.

A `Watchdog` thread expires each `Call` at its deadline by shutting down the socket of the
connection the call holds, which wakes the delivering thread from any blocking send or receive, so
a vendor that drip-feeds its answer cannot hold a slot past the deadline. The pools below hand
each connection taken for a call to that call (through `current_calls`, the delivering thread's
call), and take it back when urllib3 returns the connection to its pool, so a watchdog can never
cut a connection that already serves another call.
"""

from __future__ import annotations

import heapq
import itertools
import socket
import threading
import time
from typing import Any

from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool


class Call:
    """One HTTP call under a deadline. The watchdog `expire()`s it at the deadline unless it has
    `finish()`ed: the connection's socket is shut down, which wakes the delivering thread from
    any blocking send or receive."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.expired = False
        self._finished = False
        self._connection: Any = None
        self._lock = threading.Lock()

    def attach(self, connection: Any) -> None:
        with self._lock:
            self._connection = connection
            connection._herald_call = self
            if self.expired:
                self._cut()

    def detach(self, connection: Any) -> None:
        """The connection went back to its pool (urllib3 does so by itself once a body has been
        read to its end): from now on it may serve another call, so this one must not cut it."""
        with self._lock:
            if self._connection is connection:
                self._connection = None

    def expire(self) -> None:
        with self._lock:
            if self._finished:
                return
            self.expired = True
            self._cut()

    def finish(self) -> None:
        """The call is over: a late watchdog does nothing."""
        with self._lock:
            self._finished = True

    def _cut(self) -> None:
        sock = getattr(self._connection, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed


class Watchdog:
    """One daemon thread that expires calls at their deadlines."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Call]] = []
        self._order = itertools.count()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, call: Call) -> None:
        with self._changed:
            # Calls share one timeout, so a new deadline is nearly always the latest: the thread
            # is woken only when it must wait less than it does now.
            earliest = not self._heap or call.deadline < self._heap[0][0]
            heapq.heappush(self._heap, (call.deadline, next(self._order), call))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="deadlines", daemon=True)
                self._thread.start()
            elif earliest:
                self._changed.notify()

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._changed.wait(timeout)
                now = time.monotonic()
                due = []
                while self._heap and self._heap[0][0] <= now:
                    due.append(heapq.heappop(self._heap)[2])
            for call in due:
                call.expire()  # a no-op for calls that finished in time


current_calls = threading.local()  # the Call of the delivering thread, for the pools below


class _AttachToCall:
    """Pool mixin: hands each connection taken for a call to that call's deadline."""

    def _get_conn(self, timeout: float | None = None) -> Any:
        connection = super()._get_conn(timeout)  # type: ignore[misc]
        call = getattr(current_calls, "current", None)
        if call is not None:
            call.attach(connection)
        return connection

    def _put_conn(self, conn: Any) -> None:
        call = getattr(conn, "_herald_call", None)
        if call is not None:
            call.detach(conn)
            conn._herald_call = None
        super()._put_conn(conn)  # type: ignore[misc]


class DeadlinePool(_AttachToCall, HTTPConnectionPool):
    pass


class DeadlineHTTPSPool(_AttachToCall, HTTPSConnectionPool):
    pass
