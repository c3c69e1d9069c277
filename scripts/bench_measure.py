"""What the bench measures with: AWS calls counted through botocore events, CPU time of threads,
processes and process trees, percentiles."""

from __future__ import annotations

import math
import os
import resource
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any


class CallCounter:
    """Counts API calls (`before-call`, once per call) and HTTP attempts (`before-send`, once per
    attempt, retries included) on the clients it is attached to. With `only_flagged`, only calls
    made by threads inside `counting()` are counted (so the bench's polling is left out)."""

    def __init__(self, *, only_flagged: bool = False) -> None:
        self.only_flagged = only_flagged
        self.calls: Counter[str] = Counter()
        self.sends: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._local = threading.local()

    def attach(self, client: Any) -> None:
        service = client.meta.service_model.service_id.hyphenize()
        client.meta.events.register(f"before-call.{service}", self._on_call)
        client.meta.events.register(f"before-send.{service}", self._on_send)

    @contextmanager
    def counting(self) -> Iterator[None]:
        self._local.on = True
        try:
            yield
        finally:
            self._local.on = False

    def _wanted(self) -> bool:
        return not self.only_flagged or getattr(self._local, "on", False)

    @staticmethod
    def _operation(event_name: str) -> str:
        _, service, operation = event_name.split(".", 2)
        return f"{service}.{operation}"

    def _on_call(self, event_name: str, **kwargs: Any) -> None:
        if self._wanted():
            with self._lock:
                self.calls[self._operation(event_name)] += 1
        # Returning None matters: a before-call handler that returns a value replaces the call.

    def _on_send(self, event_name: str, **kwargs: Any) -> None:
        if self._wanted():
            with self._lock:
                self.sends[self._operation(event_name)] += 1

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {"calls": dict(self.calls), "sends": dict(self.sends)}


class ScanCounter:
    """Query and Scan requests on a DynamoDB client and the items DynamoDB says each scanned
    (`ScannedCount`, summed through `after-call`): what a listing read to fill its page."""

    def __init__(self) -> None:
        self.requests = 0
        self.scanned = 0
        self.returned = 0
        self._lock = threading.Lock()

    def attach(self, client: Any) -> None:
        for operation in ("Query", "Scan"):
            client.meta.events.register(f"after-call.dynamodb.{operation}", self._on_result)

    def _on_result(self, parsed: dict[str, Any], **_: Any) -> None:
        with self._lock:
            self.requests += 1
            self.scanned += int(parsed.get("ScannedCount", 0))
            self.returned += int(parsed.get("Count", 0))

    def _figures(self) -> dict[str, int]:
        return {"requests": self.requests, "scanned": self.scanned, "returned": self.returned}

    def peek(self) -> dict[str, int]:
        """The figures so far."""
        with self._lock:
            return self._figures()

    def take(self) -> dict[str, int]:
        """The figures so far, and start again from zero."""
        with self._lock:
            figures = self._figures()
            self.requests = self.scanned = self.returned = 0
            return figures


def process_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def proc_cpu_seconds(pid: int) -> float | None:
    """utime + stime of another process from /proc (Linux); None where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pids(pid: int) -> list[int]:
    """The direct children of `pid`, from /proc."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(entry.name))
    return children


def process_tree_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds of `pid` and each of its direct children (gunicorn's master and workers)."""
    figures = {}
    for each in [pid, *child_pids(pid)]:
        seconds = proc_cpu_seconds(each)
        if seconds is not None:
            figures[each] = seconds
    return figures


def tree_cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU used between two readings of a process tree; a process born in between counts whole."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def parse_time(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def diff_counts(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    keys = set(after) | set(before)
    return {
        k: after.get(k, 0) - before.get(k, 0)
        for k in sorted(keys)
        if after.get(k, 0) - before.get(k, 0)
    }
