"""Herald's worker as the bench runs it: a child process (`bench.py --worker-child`) running the
real `Worker.from_settings().run()`, as `manage.py run_worker` does, with botocore counters (and,
in a units pass, the capacity meter) on the clients from `notifications.aws`; and the handle the
bench uses to ask it for snapshots of its counters and CPU time over stdin."""

from __future__ import annotations

import json
import queue as queue_module
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench_measure import CallCounter, process_cpu_seconds
from bench_setup import ROOT, setup_django, stop_process
from bench_units import CapacityMeter

MARKER = "BENCH-WORKER "  # prefix of the worker child's replies on its stdout


def worker_child(*, concurrency: int, meter_lock: str | None, status_attribute: str) -> int:
    """Herald's real worker, as `manage.py run_worker` runs it, plus counters and snapshots.
    With `meter_lock`, the capacity meter is attached too (a units pass)."""
    setup_django()
    from notifications import aws
    from notifications.startup import freeze_startup_objects
    from notifications.worker import Worker
    from notifications.worker.stop_signals import stop_on_signals

    counter = CallCounter()
    meter = (
        CapacityMeter(lock_path=meter_lock, status_attribute=status_attribute)
        if meter_lock
        else None
    )
    for service in ("dynamodb", "sqs"):
        counter.attach(aws.client(service))
        if meter is not None:
            meter.attach(aws.client(service))
    worker = Worker.from_settings(concurrency=concurrency)

    outcomes: Counter[str] = Counter()
    outcomes_lock = threading.Lock()
    handle = worker.handle

    def counted_handle(work: Any, **kwargs: Any) -> str:
        try:
            result = handle(work, **kwargs)
        except Exception:
            with outcomes_lock:
                outcomes["exception"] += 1
            raise
        with outcomes_lock:
            outcomes[str(result)] += 1
        return result

    worker.handle = counted_handle  # type: ignore[method-assign]

    def snapshot() -> dict[str, Any]:
        with outcomes_lock:
            seen = dict(outcomes)
        return {
            **counter.snapshot(),
            "outcomes": seen,
            "cpu_seconds": process_cpu_seconds(),
            "wall": time.time(),
            "threads": threading.active_count(),
            "units": meter.snapshot() if meter is not None else None,
        }

    emit_lock = threading.Lock()

    def emit(kind: str, data: dict[str, Any]) -> None:
        with emit_lock:
            sys.stdout.write(MARKER + json.dumps({**data, "kind": kind}) + "\n")
            sys.stdout.flush()

    def control() -> None:
        for line in sys.stdin:
            if line.strip() == "snap":
                emit("snap", snapshot())

    stop_on_signals(lambda signum, count: worker.stop())  # not in the handler: it takes locks
    threading.Thread(target=control, name="bench-control", daemon=True).start()
    admission = getattr(worker, "admission", None)
    emit(
        "ready",
        {
            **snapshot(),
            "worker_id": worker.worker_id,
            "concurrency": worker.concurrency,
            "max_per_host": getattr(admission, "max_per_host", None),
        },
    )
    freeze_startup_objects()  # as `manage.py run_worker` does before it runs the worker
    drained = worker.run()
    emit("final", {**snapshot(), "drained": drained})
    return 0


class WorkerProcess:
    """The worker child: asks it for snapshots over stdin, reads its replies from stdout."""

    def __init__(self, command: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log = log_path.open("wb")
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
        )
        self.replies: queue_module.Queue[dict[str, Any] | None] = queue_module.Queue()
        self._lock = threading.Lock()
        threading.Thread(target=self._read, name="bench-worker-reader", daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode(errors="replace")
            if line.startswith(MARKER):
                self.replies.put(json.loads(line[len(MARKER) :]))
            else:
                self.log.write(raw)
        self.replies.put(None)

    def reply(self, kind: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                reply = self.replies.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue_module.Empty:
                raise SystemExit(f"the worker sent no {kind} in {timeout:.0f}s") from None
            if reply is None:
                raise SystemExit(
                    f"the worker exited (code {self.process.poll()}); see {self.log.name}"
                )
            if reply.get("kind") == kind:
                return reply

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            assert self.process.stdin is not None
            self.process.stdin.write(b"snap\n")
            self.process.stdin.flush()
            return self.reply("snap", 30)

    def stop(self, timeout: float) -> None:
        """SIGTERM (the worker stops receiving and drains); killed after `timeout` seconds."""
        with self._lock:
            if self.process.stdin is not None:
                self.process.stdin.close()
            stop_process(self.process, timeout)
            self.log.close()
