"""The soak's load: a seeded plan of messages, and a submitter that sends it through Herald's HTTP
API at a steady rate, part of it through the batch endpoint.

Every message has an idempotency key, so a submission that met a fault (a 503 while the stand-in
throttles or refuses connections, a timeout, a 429 from the intake limit) is sent again with the
same key until Herald answers 202 or 200: a message is *accepted* once Herald said so, and counted
once however many times it was sent. The submitter never lets more than `max_outstanding`
accepted messages wait for their final answer at the vendor (moto slows down as its queue grows);
a pause for that shifts the schedule, so the rate stays steady after it.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import requests
from soak_vendor import KINDS

# Kind -> share of the messages.
KIND_SHARES = {"healthy": 0.55, "flaky": 0.15, "slow": 0.10, "ratelimit": 0.10, "permanent": 0.10}
LARGE_BODY_SHARE = 0.2  # bodies over 512 bytes: the request is stored in an item of its own
BATCH_SIZES = (5, 40)
RETRYABLE = {429, 500, 502, 503, 504}
SUBMIT_TRIES = 40
SUBMIT_THREADS = 4


@dataclass(frozen=True)
class Planned:
    index: int
    kind: str
    url: str
    body: dict[str, Any]
    key: str

    def as_item(self) -> dict[str, Any]:
        return {"target_url": self.url, "method": "POST", "body": self.body}


def plan_messages(
    count: int, *, seed: int, vendor_port: int, batch_share: float
) -> tuple[list[Planned], list[list[int]]]:
    """The messages and how they are sent (lists of indexes: one for a single POST, more for a
    batch), the same for the same seed."""
    rng = random.Random(f"load-{seed}")
    kinds, weights = zip(*KIND_SHARES.items(), strict=True)
    planned = []
    for index in range(count):
        kind = rng.choices(kinds, weights)[0]
        path = f"/{kind}"
        if kind == "flaky":
            path += f"?fail={rng.randint(1, 3)}"
        elif kind == "slow":
            path += f"?ms={rng.randint(500, 3000)}"
        body: dict[str, Any] = {"soak": seed, "n": index, "kind": kind}
        if rng.random() < LARGE_BODY_SHARE:
            body["padding"] = "x" * rng.randint(600, 4000)
        url = f"http://{KINDS[kind]}:{vendor_port}{path}"
        planned.append(Planned(index, kind, url, body, f"soak-{seed}-{index}"))
    sends: list[list[int]] = []
    index = 0
    while index < count:
        size = rng.randint(*BATCH_SIZES) if rng.random() < batch_share else 1
        sends.append(list(range(index, min(count, index + size))))
        index += size
    return planned, sends


class Submitter:
    """Sends the plan through the API; `accepted` maps plan index to message id."""

    def __init__(
        self,
        *,
        api_url: str,
        api_key: str,
        planned: list[Planned],
        sends: list[list[int]],
        rate: float,
        max_outstanding: int,
        finished_at_vendor: Callable[[], int],
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.api_key = api_key
        self.planned = planned
        self.sends = sends
        self.rate = rate
        self.max_outstanding = max_outstanding
        self.finished_at_vendor = finished_at_vendor
        self.lock = threading.Lock()
        self.accepted: dict[int, str] = {}
        self.refused: dict[int, str] = {}  # index -> why (after every retry, or a 4xx)
        self.answers: Counter[str] = Counter()  # what the API answered, by status (retries too)
        self.paused_seconds = 0.0
        self.local = threading.local()

    @property
    def outstanding(self) -> int:
        with self.lock:
            accepted = len(self.accepted)
        return accepted - self.finished_at_vendor()

    def run(self, stop: threading.Event) -> None:
        """Send everything at `rate` messages a second (until `stop`); returns when every send
        has its answer."""
        start = time.monotonic()
        with ThreadPoolExecutor(SUBMIT_THREADS, thread_name_prefix="submit") as pool:
            for indexes in self.sends:
                due = start + indexes[0] / self.rate
                if stop.wait(max(0.0, due - time.monotonic())):
                    break
                paused = time.monotonic()
                while self.outstanding >= self.max_outstanding and not stop.wait(0.5):
                    pass
                start += time.monotonic() - paused
                self.paused_seconds += time.monotonic() - paused
                pool.submit(self._send, indexes, stop)

    def _session(self) -> requests.Session:
        session = getattr(self.local, "session", None)
        if session is None:
            session = self.local.session = requests.Session()
            session.headers["Authorization"] = f"Bearer {self.api_key}"
        return session

    def _send(self, indexes: list[int], stop: threading.Event) -> None:
        pending = list(indexes)
        for attempt in range(SUBMIT_TRIES):
            if not pending or stop.is_set():
                break
            if len(indexes) == 1:
                pending, wait = self._post_one(pending[0])
            else:
                pending, wait = self._post_batch(pending)
            if pending:
                stop.wait(wait or min(5.0, 0.25 * 2**attempt))
        with self.lock:
            for index in pending:
                self.refused.setdefault(index, "gave up retrying")

    def _note(self, answer: str) -> None:
        with self.lock:
            self.answers[answer] += 1

    def _post_one(self, index: int) -> tuple[list[int], float | None]:
        planned = self.planned[index]
        try:
            response = self._session().post(
                f"{self.api_url}/api/v1/messages",
                json=planned.as_item(),
                headers={"Idempotency-Key": planned.key},
                timeout=30,
            )
        except requests.RequestException as error:
            self._note(type(error).__name__)
            return [index], None
        self._note(str(response.status_code))
        if response.status_code in (200, 202):
            with self.lock:
                self.accepted[index] = response.json()["id"]
            return [], None
        if response.status_code in RETRYABLE:
            return [index], _seconds(response.headers.get("Retry-After"))
        with self.lock:
            self.refused[index] = f"{response.status_code} {response.text[:200]}"
        return [], None

    def _post_batch(self, indexes: list[int]) -> tuple[list[int], float | None]:
        items = [
            {**self.planned[index].as_item(), "idempotency_key": self.planned[index].key}
            for index in indexes
        ]
        try:
            response = self._session().post(
                f"{self.api_url}/api/v1/messages/batch", json={"messages": items}, timeout=60
            )
        except requests.RequestException as error:
            self._note(f"batch {type(error).__name__}")
            return indexes, None
        self._note(f"batch {response.status_code}")
        if response.status_code != 200:
            if response.status_code in RETRYABLE:
                return indexes, _seconds(response.headers.get("Retry-After"))
            with self.lock:
                for index in indexes:
                    self.refused[index] = f"batch {response.status_code} {response.text[:200]}"
            return [], None
        again: list[int] = []
        wait: float | None = None
        for index, result in zip(indexes, response.json()["results"], strict=True):
            self._note(f"item {result['status']}")
            if result["status"] in (200, 202):
                with self.lock:
                    self.accepted[index] = result["message"]["id"]
            elif result["status"] in RETRYABLE:
                again.append(index)
                wait = max(wait or 0.0, float(result.get("retry_after") or 0)) or None
            else:
                with self.lock:
                    self.refused[index] = f"item {result['status']} {result.get('error')}"
        return again, wait


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None
