"""The soak's faults: a schedule drawn from the seed, and the thread that carries it out.

| Kind | Every (s, ±50%) | What |
|---|---|---|
| `worker_sigkill` | 10 | SIGKILL a worker (the slot drawn, or the next one running); restart it 1–3 s later |
| `worker_sigterm` | 30 | SIGTERM the worker with the most deliveries in flight (its /metrics); restart it once it exited |
| `reconcile_kill` | 45 | SIGKILL the reconcile loop; restart it 1–5 s later |
| `aws_outage` | 60 | the stand-in refuses connections for 1–4 s |

AWS errors (throttling, 500s) are not scheduled: the stand-in answers a share of all DynamoDB
and SQS requests with them for as long as the load lasts, and counts them itself.

The schedule is the same for the same seed; what each fault hits depends on timing (which
worker is running, what it has in flight), which no seed can fix.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import requests
from soak_stack import Service, Stack

EVERY = {"worker_sigkill": 10.0, "worker_sigterm": 30.0, "reconcile_kill": 45.0, "aws_outage": 60.0}
KINDS = tuple(EVERY)


@dataclass(order=True, frozen=True)
class Event:
    at: float
    kind: str = field(compare=False)
    slot: int = field(compare=False, default=0)
    seconds: float = field(compare=False, default=0.0)  # restart delay, or outage length


@dataclass(frozen=True)
class Kill:
    """A signal sent to a Herald process: when (wall clock), to which pid, how."""

    at: float
    kind: str
    service: str
    pid: int
    in_flight: int | None = None


def schedule(*, seed: int, horizon: float, kinds: set[str], workers: int) -> list[Event]:
    rng = random.Random(f"faults-{seed}")
    events = []
    for (
        kind
    ) in KINDS:  # drawn for every kind, so that turning one off leaves the others as they were
        at = 0.0
        while True:
            at += EVERY[kind] * rng.uniform(0.5, 1.5)
            slot = rng.randrange(workers)
            seconds = {
                "worker_sigkill": rng.uniform(1, 3),
                "reconcile_kill": rng.uniform(1, 5),
            }.get(kind, rng.uniform(1, 4))
            if at > horizon:
                break
            if kind in kinds:
                events.append(Event(round(at, 2), kind, slot, round(seconds, 2)))
    return sorted(events)


class FaultRunner:
    """Carries out the schedule from `run()` until `stop` is set; `counts` by kind, `kills`
    for the duplicate analysis."""

    def __init__(self, stack: Stack, events: list[Event]) -> None:
        self.stack = stack
        self.events = events
        self.counts: Counter[str] = Counter()
        self.kills: list[Kill] = []
        self.sigterm_exits: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.helpers: list[threading.Thread] = []

    def run(self, stop: threading.Event) -> None:
        start = time.monotonic()
        for event in self.events:
            if stop.wait(max(0.0, start + event.at - time.monotonic())):
                return
            try:
                self.execute(event)
            except requests.RequestException as error:
                print(f"fault {event.kind} not injected: {error}", flush=True)

    def execute(self, event: Event) -> None:
        if event.kind == "aws_outage":
            requests.post(
                f"{self.stack.standin_url}/_standin/outage",
                json={"seconds": event.seconds},
                timeout=10,
            ).raise_for_status()
            self._count(event.kind)
        elif event.kind == "reconcile_kill":
            self._kill(self.stack.reconciler, event)
        elif event.kind == "worker_sigkill":
            worker = self._running_worker(event.slot)
            if worker is not None:
                self._kill(worker, event)
        elif event.kind == "worker_sigterm":
            self._terminate()

    def _count(self, kind: str) -> None:
        with self.lock:
            self.counts[kind] += 1

    def _running_worker(self, slot: int) -> Service | None:
        workers = self.stack.workers
        for offset in range(len(workers)):
            worker = workers[(slot + offset) % len(workers)]
            if worker.running():
                return worker
        return None

    def _kill(self, service: Service, event: Event) -> None:
        pid = service.signal(signal.SIGKILL)
        if pid is None:
            return
        with self.lock:
            self.kills.append(Kill(time.time(), event.kind, service.name, pid))
            self.counts[event.kind] += 1
        if service.process is not None:
            service.process.wait()
        self._later(event.seconds, service.start)

    def _terminate(self) -> None:
        """SIGTERM the running worker with the most deliveries in flight (among those that
        answer /metrics: one still starting would die of the signal before its handler is
        installed); restart it when it has exited (recording its exit code and how long the
        drain took)."""
        for _ in range(10):  # a worker still starting answers no /metrics, nor SIGTERM yet
            loads = [(in_flight(w), w) for w in self.stack.workers if w.running()]
            ready = [(load, worker) for load, worker in loads if load is not None]
            if ready:
                break
            time.sleep(1)
        else:
            return
        load, worker = max(ready, key=lambda pair: pair[0])
        sent = time.monotonic()
        pid = worker.signal(signal.SIGTERM)
        if pid is None:
            return
        with self.lock:
            self.kills.append(Kill(time.time(), "worker_sigterm", worker.name, pid, load))
            self.counts["worker_sigterm"] += 1

        def wait_and_restart() -> None:
            process = worker.process
            assert process is not None
            code = worker.stop(timeout=self.stack.grace + 20)
            with self.lock:
                self.sigterm_exits.append(
                    {
                        "pid": pid,
                        "in_flight": load,
                        "code": code,
                        "seconds": time.monotonic() - sent,
                    }
                )
            worker.start()

        self._later(0, wait_and_restart)

    def _later(self, seconds: float, action: Any) -> None:
        def run() -> None:
            time.sleep(seconds)
            action()

        helper = threading.Thread(target=run, daemon=True)
        helper.start()
        with self.lock:
            self.helpers.append(helper)

    def settle(self) -> None:
        """After the load: wait for pending restarts, so that every process runs again."""
        with self.lock:
            helpers = list(self.helpers)
        for helper in helpers:
            helper.join()
        for service in [*self.stack.workers, self.stack.reconciler]:
            if not service.running():
                service.start()


def in_flight(worker: Service) -> int | None:
    """The worker's deliveries in flight, from its /metrics (None when it does not answer)."""
    port = worker.env.get("WORKER_METRICS_PORT")
    try:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except requests.RequestException:
        return None
    for line in text.splitlines():
        if line.startswith("herald_deliveries_in_flight "):
            return int(float(line.split()[1]))
    return None
